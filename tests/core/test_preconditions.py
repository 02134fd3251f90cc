"""Precondition search: separating clauses, OR of ANDs, inversion, identity fields, determinism."""

import random
from collections import Counter

from traincheck_core.events import ObjSummary, Scalar, TensorSummary
from traincheck_core.invariants import Clause, Precondition
from traincheck_core.preconditions import (
    arg_fields,
    describe,
    holds,
    infer_precondition,
    infer_with_exceptions,
    is_identity,
    make_row,
    var_fields,
)


def ex(**fields):
    return (make_row(fields),)


def pair(a, b):
    return (make_row(a), make_row(b))


def test_no_negatives_means_always():
    pre = infer_precondition([ex(**{"var.x": 1})], [])
    assert pre == Precondition()
    assert holds(pre, ex(**{"var.x": 2}))


def test_present_clause_separates():
    pos = [ex(**{"var.grad": True, "var.requires_grad": True})]
    neg = [ex(**{"var.requires_grad": False})]
    pre = infer_precondition(pos, neg)
    assert pre.any_of == [[Clause(kind="present", field="var.grad")]]
    assert describe(pre) == "when it has a gradient"
    assert holds(pre, pos[0]) and not holds(pre, neg[0])


def test_constant_clause_prefers_meta_over_input_shapes():
    pos = [ex(**{"meta.stage": "eval", "arg.input.shape": [16, 4]})]
    neg = [ex(**{"meta.stage": "train", "arg.input.shape": [8, 4]})]
    pre = infer_precondition(pos, neg)
    assert pre.any_of == [[Clause(kind="constant", field="meta.stage", values=["eval"])]]


def test_or_of_ands_when_one_and_is_not_enough():
    pos = [ex(**{"meta.mode": "a", "var.k": 1}), ex(**{"meta.mode": "b", "var.k": 2})]
    neg = [ex(**{"meta.mode": "a", "var.k": 2}), ex(**{"meta.mode": "b", "var.k": 1})]
    pre = infer_precondition(pos, neg)
    assert pre is not None and len(pre.any_of) == 2 and not pre.inverted
    for p in pos:
        assert holds(pre, p)
    for n in neg:
        assert not holds(pre, n)


def test_inverted_when_only_the_negatives_have_a_shape():
    # positives share nothing but the negatives all have a flag: "holds unless flag"
    pos = [ex(**{"var.a": i}) for i in range(6)] + [ex(**{"var.b": i}) for i in range(6)]
    neg = [ex(**{"var.a": 9, "var.flag": True}), ex(**{"var.b": 9, "var.flag": True})]
    pre = infer_precondition(pos, neg)
    assert pre is not None
    assert all(holds(pre, p) for p in pos) and not any(holds(pre, n) for n in neg)


def test_identical_positive_and_negative_drop_the_hypothesis():
    row = {"var.grad": True, "meta.stage": "train"}
    assert infer_precondition([ex(**row)], [ex(**row)]) is None


def test_multi_row_consistent_and_unequal():
    pos = [pair({"meta.rank": 0, "var.kind": "p"}, {"meta.rank": 1, "var.kind": "p"})]
    neg = [pair({"meta.rank": 0, "var.kind": "p"}, {"meta.rank": 1, "var.kind": "b"})]
    pre = infer_precondition(pos, neg)
    assert pre is not None
    kinds = {(c.kind, c.field) for conj in pre.any_of for c in conj}
    assert kinds & {("consistent", "var.kind"), ("constant", "var.kind")}
    assert holds(pre, pos[0]) and not holds(pre, neg[0])


def test_identity_fields_never_enter_rows():
    row = dict(make_row({"meta.step": 3, "meta.epoch": 1, "arg.self.id": 77, "meta.pid": 5,
                         "arg.loc": "a.py:1", "meta.run_id": "r", "meta.host": "h",
                         "arg.x.nbytes": 64, "var.data": "deadbeefdeadbeefdead",
                         "meta.lr": 0.1, "meta.stage": "train"}))
    assert row == {"meta.stage": "train"}
    assert is_identity("arg.self.thread") and not is_identity("meta.stage")


def test_identity_only_separator_drops_the_hypothesis():
    # the only difference is the process id and the source location: no precondition
    pos = [ex(**{"meta.pid": 1, "arg.loc": "a.py:1", "var.grad": True})]
    neg = [ex(**{"meta.pid": 2, "arg.loc": "a.py:2", "var.grad": True})]
    assert infer_precondition(pos, neg) is None


def test_fields_from_summaries_and_fingerprints():
    f = arg_fields({"self": ObjSummary(type="Net", attrs={"training": Scalar(False)}),
                    "x": TensorSummary(type="T", shape=[2], dtype="f32", device="cpu",
                                       fp="0123456789abcdef0123")})
    assert f["arg.self.type"] == "Net" and f["arg.self.training"] is False
    assert "arg.x.fp" not in dict(make_row(f))
    v = var_fields({"data": "abc", "grad": None, "requires_grad": True})
    assert v == {"var.data": True, "var.requires_grad": True}


def test_search_is_deterministic_and_order_free():
    rng = random.Random(0)
    pos = [ex(**{"meta.stage": s, "var.grad": True, "var.k": k})
           for s in ("train", "eval") for k in range(3)]
    neg = [ex(**{"meta.stage": s, "var.k": k}) for s in ("train", "eval") for k in range(3)]
    first = infer_precondition(Counter(pos), Counter(neg))
    for _ in range(5):
        rng.shuffle(pos)
        rng.shuffle(neg)
        assert infer_precondition(pos, neg) == first


def test_part_of_the_positives_beats_an_inverted_formula():
    # parameters with a gradient change, and so do optimizer buffers that look exactly like
    # running statistics that do not: "when it has a gradient" (sound, readable) is chosen
    # over "unless <whatever the negatives look like>"
    pos = [ex(**{"var.grad": True, "var.is_param": True, "var.name": f"p{i}"}) for i in range(5)]
    pos += [ex(**{"var.is_param": False, "var.kind": "t", "var.name": f"m{i}"}) for i in range(5)]
    neg = [ex(**{"var.is_param": False, "var.kind": "t", "var.name": "running_mean"}),
           ex(**{"var.lr": 1})]
    pre = infer_precondition(pos, neg)
    assert pre is not None and not pre.inverted
    assert pre.any_of == [[Clause(kind="present", field="var.grad")]]
    assert not any(holds(pre, n) for n in neg)


def test_not_in_clause():
    pre = Precondition(any_of=[[Clause(kind="present", field="var.grad"),
                                Clause(kind="not_in", field="var.name", values=["b"])]])
    assert holds(pre, ex(**{"var.grad": True, "var.name": "a"}))
    assert not holds(pre, ex(**{"var.grad": True, "var.name": "b"}))
    assert describe(pre) == "when it has a gradient and name is not 'b'"


def test_exceptions_name_the_variables_the_rule_does_not_fit():
    # "b" is both positive and negative with the same row: named as an exception
    def row(name):
        return ex(**{"var.grad": True, "var.name": name})
    pos = Counter({row("a"): 5, row("c"): 5, row("b"): 3})
    neg = Counter({row("b"): 2, ex(**{"var.name": "buf"}): 5})
    assert infer_precondition(pos, neg) is None
    pre = infer_with_exceptions(pos, neg)
    assert pre is not None
    assert pre.any_of == [[Clause(kind="present", field="var.grad"),
                           Clause(kind="not_in", field="var.name", values=["b"])]]
    # a conflict without names, or more exceptions than covered variables: nothing
    assert infer_with_exceptions({ex(**{"var.grad": True}): 1},
                                 {ex(**{"var.grad": True}): 1}) is None
    assert infer_with_exceptions(Counter({row("a"): 1, row("b"): 1}),
                                 Counter({row("a"): 1, row("b"): 1})) is None

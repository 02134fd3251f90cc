"""traincheck adapter for TensorFlow/Keras. Early: it reports TensorFlow's version in trace
headers; Keras callback and optimizer instrumentation is not written yet."""

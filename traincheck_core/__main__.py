from traincheck_core.cli.main import entry

entry()

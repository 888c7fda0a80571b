"""The `ufo` command line (`ufo_cli.main`), above `ufo/`, `model_store/` and `service/`."""

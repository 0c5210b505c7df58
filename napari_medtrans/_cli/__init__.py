"""One module per `medtrans` subcommand (see napari_medtrans/cli.py)."""

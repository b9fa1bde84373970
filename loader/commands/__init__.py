"""The commands of `elt`, one module per group: each adds its parsers (`add_parsers`) with
the function that runs the command; loader/cli.py parses and dispatches."""

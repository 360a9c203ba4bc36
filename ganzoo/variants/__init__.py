"""The built-in variants, one module each; every module is a ganzoo plugin."""

"""Imports every built-in translator module so that their @register_translator decorators run."""

"""Command-line interface (Typer): one module per command group; options in, library calls out."""

"""The ``gradts`` command line: parse, call one engine function, render (DESIGN.md §3)."""

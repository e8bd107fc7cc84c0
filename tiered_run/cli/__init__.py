"""The command line: parses options, calls the library, renders results. Nothing else.

`entry` is the process entry point (and must import nothing heavy before the signals are
taken); `app` is the click group; the commands live in the modules beside them and import
the heavy parts (supervisor, renderers) only when they run.
"""

"""The shipped playbooks, installed with camleak as `camleak.builtin_playbooks` (see pyproject.toml).

The YAML files are the content; this file only makes the folder an importable package.
"""

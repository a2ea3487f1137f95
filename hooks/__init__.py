"""cookiecutter's hooks, importable by the template's own tests and tools.

cookiecutter ignores this file: it runs only pre_gen_project.py and post_gen_project.py,
each rendered by Jinja and copied alone into a temporary directory. Their Jinja stands only
inside string literals, so unrendered they are plain modules: ``from hooks import
pre_gen_project``.
"""

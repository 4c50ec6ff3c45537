"""``make bench``: nexec measured beside plain-library floors on this machine.

Every nexec figure is printed next to the floor measured in the same run, and
as a ratio. ``python -m bench --quick`` is the tiny version the tests run.
"""

"""Run the pleval command line from a checkout: ``python cli.py --help``.

The same app as the installed ``pleval`` console script.
"""

from pleval.cli import run

if __name__ == "__main__":
    run()

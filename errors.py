"""Bad input and how the scripts report it: DataError, the main() wrapper that turns it into a
message and exit code 2, and warnings. Nothing here imports Keras."""
import sys


class DataError(Exception):
    """Bad or missing input data; scripts print the message and exit with code 2."""


def warn(message):
    """A problem worth knowing that need not stop the run, on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def run(main, argv=None):
    """Run a script's main(argv): DataError -> the message on stderr and exit code 2; Ctrl-C -> 130.
    main's own return value (None or an int) is the exit code otherwise."""
    try:
        return main(argv) or 0
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the same command started again resumes where this one stopped", file=sys.stderr)
        return 130

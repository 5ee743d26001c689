"""The one base of the errors a user's input or a run's circumstances raise.

Each ``TfnetError`` carries the exit status a script returns for it and the word its one line
starts with, so a script handles all of them in one place:

    except errors.TfnetError as error:
        print(f"{error.label}: {error}", file=sys.stderr)
        return error.exit_code

The classes themselves live beside the code that raises them (``tfnet.data.BadDataError``,
``tfnet.training.NonFiniteError``, ...); most also derive from the built-in exception they
refine (``ValueError`` for a bad value), so callers that catch that still catch them.
"""


class TfnetError(Exception):
    """An error the user can act on, told in one line.

    Attributes:
      exit_code: the status a script exits with (1: bad input or an unusable run; 3: training
        diverged; 128 + N: stopped by signal N).
      label: the first word of the script's line ("error", or "interrupted").
    """

    exit_code = 1
    label = "error"


def report(error, stream):
    """Writes ``error``'s one line to ``stream``; returns its exit status (scripts' helper)."""
    print(f"{error.label}: {error}", file=stream, flush=True)
    return error.exit_code

"""The study's problems: a dataset, a network, a batch size, an epoch budget and a target.

Each problem states what every optimiser is given (the same network, batch size and epochs) and
the dev accuracy whose first reaching is timed (steps and seconds to the target). The embedded
2-D sets need no data; any TFDS image-classification dataset prepared in ``data_dir`` is a problem
too (``mnist_t10k`` here), with the image network below.
"""

import dataclasses

from tfnet import data


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem.

    Attributes:
      name: the ``--problems`` value (the dataset's name).
      hidden_units: the ReLU network's hidden layers (He initialisation).
      batch_size: b.
      epochs: the budget of every trial.
      target: the dev accuracy whose first reaching is the time to target.
    """

    name: str
    hidden_units: tuple
    batch_size: int
    epochs: int
    target: float

    def describe(self, epochs=0):
        """One line: the network, the batch size, the epochs (``epochs`` if > 0) and the target."""
        return (f"{self.name}: network {'-'.join(map(str, self.hidden_units))}, b={self.batch_size}, "
                f"{epochs or self.epochs} epochs, target dev accuracy {self.target:g}")


EMBEDDED = {
    "moons": Problem("moons", (64, 32), 64, 30, 0.97),
    "circles": Problem("circles", (64, 32), 64, 30, 0.99),
    "flower": Problem("flower", (64, 32), 64, 60, 0.85),
}


def image_problem(name):
    """A TFDS image dataset: an MLP 256-128, b=64, 5 epochs, target dev accuracy 0.93."""
    return Problem(name, (256, 128), 64, 5, 0.93)


def get(name):
    """The problem called ``name``: an embedded set's, or ``image_problem(name)``."""
    return EMBEDDED[name] if name in data.EMBEDDED_DATASETS else image_problem(name)

"""tfnet: deep-learning optimisation methods implemented from their equations.

Importing ``tfnet`` has no side effects: no seeding, no writers, no logging set-up and no change
to TensorFlow's global state. Import the submodules you need (``tfnet.data``, ``tfnet.model``,
``tfnet.training``, ``tfnet.optimizers``, ``tfnet.layers``, ``tfnet.gradcheck``, ...).
"""

__version__ = "0.1.0"

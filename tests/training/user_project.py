"""A user's project the tests train: a functional CNN written with Keras' and tfnet's layers, a
subclassed MLP, the images of a small folder and the rows of a CSV, none of which tfnet builds
itself. Written to disk by ``write`` (the scripts import the models as user_models:<name>)."""

import os

import keras
import numpy as np
import tensorflow as tf

from tfnet import layers

CLASSES = ("circle", "cross", "line")
SIZE = 8  # images 8×8, one channel


def small_cnn(info):
    """A user's functional CNN: Keras convolutions with a Keras L2 regulariser, tfnet's BatchNorm
    over channels, pooling, and logits."""
    inputs = keras.Input(info.input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(6, 3, padding="same", use_bias=False,
                            kernel_regularizer=keras.regularizers.L2(1e-3),
                            kernel_initializer=keras.initializers.HeNormal(seed=1))(x)
    x = layers.BatchNorm(momentum=0.9)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(info.num_classes, kernel_initializer=keras.initializers.GlorotNormal(seed=2))(x)
    return keras.Model(inputs, outputs, name="users_cnn")


class TabularMLP(keras.Model):
    """A user's subclassed model: its inputs standardised with the data's statistics, two Dense
    layers."""

    def __init__(self, info):
        super().__init__(name="users_mlp")
        self.mean, self.scale = info.mean, 1 / np.sqrt(info.variance)
        self.hidden = layers.Dense(16, seed=3, l2=0.01)
        self.logits = layers.Dense(info.num_classes, seed=4)

    def call(self, inputs, training=False):
        standardised = (inputs - self.mean) * self.scale
        return self.logits(tf.nn.relu(self.hidden(standardised)))


def subclassed(info):
    return TabularMLP(info)


def wrong_width(info):
    return keras.Sequential([keras.Input(info.input_shape), keras.layers.Flatten(),
                             keras.layers.Dense(info.num_classes + 1)])


def not_a_model(info):
    return "a string"


def _image(label, rng):
    """A noisy 8×8 image of a circle, a cross or a line."""
    y, x = np.mgrid[:SIZE, :SIZE]
    shape = [(np.hypot(y - 3.5, x - 3.5) - 2.5) ** 2 < 1, (y == x) | (y == SIZE - 1 - x),
             np.abs(y - 3.5) < 1][label]
    pixels = 200 * shape + rng.normal(0, 25, (SIZE, SIZE))
    return np.clip(pixels, 0, 255).astype(np.uint8)[..., None]


def write_images(root, per_class=(24, 6), seed=0):
    """A folder ``root/train/<class>/`` and ``root/test/<class>/`` of PNG images."""
    rng = np.random.default_rng(seed)
    for part, count in zip(("train", "test"), per_class):
        for label, name in enumerate(CLASSES):
            os.makedirs(os.path.join(root, part, name), exist_ok=True)
            for i in range(count):
                png = tf.io.encode_png(_image(label, rng))
                tf.io.write_file(os.path.join(root, part, name, f"{i}.png"), png)
    return str(root)


def write_csv(path, rows=300, seed=0):
    """A tabular problem: four measurements, the species a function of two of them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4)).astype(np.float32)
    species = np.where(x[:, 0] + x[:, 1] > 0.5, "tall", np.where(x[:, 0] - x[:, 1] > 0, "wide", "small"))
    with open(path, "w") as f:
        f.write("length,width,height,weight,species\n")
        for features, name in zip(x, species):
            f.write(",".join(f"{v:.5f}" for v in features) + f",{name}\n")
    return str(path)


def write(directory):
    """The project on disk: user_models.py (this module's models), images/ and table.csv."""
    with open(__file__) as source, open(os.path.join(directory, "user_models.py"), "w") as f:
        f.write(source.read())
    return (write_images(os.path.join(directory, "images")),
            write_csv(os.path.join(directory, "table.csv")))

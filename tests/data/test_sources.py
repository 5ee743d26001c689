"""A user's data: arrays, .npz and .csv files, image folders and tf.data pipelines, each into
train / dev / test splits that can be held in memory or read by position from disk."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tfnet import data
from tfnet.data import files
from tfnet.data.splits import ArraySplit


def _arrays(split):
    return tuple(t.numpy() for t in data.in_memory(split))


def _rows(split):
    """The split's examples as a set of (features bytes, label)."""
    x, y = _arrays(split)
    return {(row.tobytes(), int(label)) for row, label in zip(x, y)}


def _base(split):
    """What a split reads from: the split a subset is of, or the split itself."""
    return getattr(split, "base", split)


def _labelled(m, d=3, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, d)).astype(np.float32)
    return x, np.sort(rng.integers(0, classes, m))  # sorted by class, as files often are


def test_arrays_give_random_dev_and_test_splits_that_do_not_overlap():
    x, y = _labelled(500)
    splits = data.from_arrays(x, y, dev_fraction=0.2)
    info = splits.info
    assert (info.num_train, info.num_dev, info.num_test) == (300, 100, 100)
    assert info.num_classes == 3 and info.input_shape == (3,)
    assert "no test split given: 100 examples (20%)" in info.notes[0]
    train, dev, test = (_rows(s) for s in (splits.train, splits.dev, splits.test))
    assert not train & dev and not train & test and not dev & test
    assert len(train | dev | test) == 500
    # Drawn at random: the class-sorted input does not give a dev set of the last class only.
    assert len({label for _, label in dev}) == 3
    # The same arrays give the same splits (the dev and test draws do not follow a run's seed).
    assert _rows(data.from_arrays(x, y).dev) == dev


def test_arrays_with_a_test_split_hold_out_dev_only():
    x, y = _labelled(500)
    x_test, y_test = _labelled(50, seed=1)
    splits = data.from_arrays(x, y, x_test, y_test, dev_fraction=0.1)
    assert (splits.info.num_train, splits.info.num_dev, splits.info.num_test) == (450, 50, 50)
    assert splits.info.notes == ()
    np.testing.assert_array_equal(_arrays(splits.test)[0], x_test)


@pytest.mark.parametrize("call, message", [
    (lambda: data.from_arrays(np.zeros((4, 2)), np.zeros(4)), "y must hold integer class labels"),
    (lambda: data.from_arrays(np.zeros((4, 2)), np.zeros(3, int)), r"y must hold one integer label per example \(4\)"),
    (lambda: data.from_arrays(np.zeros(4), np.zeros(4, int)), r"x must be a numeric array of shape \(m, ...\)"),
    (lambda: data.from_arrays(np.zeros((4, 2)), np.zeros(4, int), x_test=np.zeros((2, 2))), "x_test and y_test must be given together"),
])
def test_bad_arrays_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_an_uncompressed_npz_is_read_by_position_and_a_compressed_one_loaded(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (60, 5, 4), dtype=np.uint8), rng.integers(0, 4, (60, 1))
    x_test, y_test = x[:10], y[:10]
    np.savez(tmp_path / "stored.npz", x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    np.savez_compressed(tmp_path / "packed.npz", x_train=x, y_train=y)
    stored = data.load(str(tmp_path / "stored.npz"), dev_fraction=0.25)
    packed = data.load(str(tmp_path / "packed.npz"), dev_fraction=0.2)
    assert stored.info.name == "stored" and stored.info.input_shape == (5, 4, 1)  # a channel axis
    assert stored.info.num_classes == int(y.max()) + 1
    assert isinstance(_base(stored.train), files.FileSplit)  # never loaded whole
    assert isinstance(_base(packed.train), ArraySplit)
    everything = {(row.astype(np.float32)[..., None].tobytes(), int(label)) for row, label in zip(x, y[:, 0])}
    assert _rows(stored.train) | _rows(stored.dev) == everything
    assert _rows(packed.train) | _rows(packed.dev) | _rows(packed.test) == everything
    # Reading scattered positions gives those rows (runs of consecutive positions in one read).
    rows = files.RowFile.of_npz_member(str(tmp_path / "stored.npz"), "x_train")
    np.testing.assert_array_equal(rows.read([7, 8, 9, 2, 59, 0]), x[[7, 8, 9, 2, 59, 0]].astype(np.float32))


def test_an_npz_without_its_arrays_is_refused_in_one_line(tmp_path):
    np.savez(tmp_path / "odd.npz", features=np.zeros((3, 2)))
    with pytest.raises(data.BadDataError, match=r"dataset must be a .npz holding x_train, y_train "
                       r"and optionally x_test, y_test .* whose arrays are features"):
        data.load(str(tmp_path / "odd.npz"))


def _write_csv(path, rows, header="a,b,c,species"):
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return str(path)


def test_a_csv_with_named_classes_numbers_them_in_sorted_order(tmp_path):
    rows = [(i, i * 0.5, -i, ["virginica", "setosa", "versicolor"][i % 3]) for i in range(90)]
    splits = data.load(_write_csv(tmp_path / "iris.csv", rows), label_column="species")
    info = splits.info
    assert info.class_names == ("setosa", "versicolor", "virginica") and info.num_classes == 3
    assert info.input_shape == (3,) and info.num_train + info.num_dev + info.num_test == 90
    x, y = _arrays(splits.train)
    for features, label in zip(x, y):  # each row kept whole: features and class together
        i = int(features[0])
        assert features.tolist() == [i, i * 0.5, -i]
        assert info.class_names[label] == ["virginica", "setosa", "versicolor"][i % 3]


@pytest.mark.parametrize("rows, label_column, message", [
    ([(1, 2, 3, 0)], "label", r"label_column must be one of the columns of .*: a, b, c, species\. "
                               r"Received: label_column='label'"),
    ([(1, 2, 3, 0), (4, "five", 6, 1)], "species", r"line 3: column 'b' must be a number\. "
                                                    r"Received: 'five'"),
    ([(1, 2, 3, 0), (4, 5, 1)], "species", r"lines 2-3: every line must have the header's 4 fields"),
    ([], "species", "dataset must have at least one example"),
])
def test_a_bad_csv_is_named_by_line_and_column(tmp_path, rows, label_column, message):
    path = _write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(data.BadDataError, match=message):
        data.load(path, label_column=label_column, cache_dir=str(tmp_path / "cache"))


def test_a_csv_bigger_than_the_budget_is_copied_once_and_read_by_position(tmp_path):
    x, y = _labelled(400, d=3)
    rows = [(*features.tolist(), label) for features, label in zip(x, y)]
    path = _write_csv(tmp_path / "big.csv", rows, header="a,b,c,label")
    cache = tmp_path / "cache"
    in_memory = data.load(path, cache_dir=str(cache))
    copied = data.load(path, memory_budget=100, cache_dir=str(cache))
    assert isinstance(_base(copied.train), files.FileSplit)
    assert isinstance(_base(in_memory.train), ArraySplit)
    for a, b in zip((in_memory.train, in_memory.dev, in_memory.test), (copied.train, copied.dev, copied.test)):
        np.testing.assert_array_equal(_arrays(a)[0], _arrays(b)[0])
        np.testing.assert_array_equal(_arrays(a)[1], _arrays(b)[1])
    (copy,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    written = (copy / "features.f32").stat().st_mtime_ns
    data.load(path, memory_budget=100, cache_dir=str(cache))  # the unchanged file: reused
    assert (copy / "features.f32").stat().st_mtime_ns == written
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp")]


def test_a_csv_that_fails_half_way_leaves_no_copy(tmp_path):
    rows = [(i, i, i, i % 2) for i in range(70000)] + [(1, "x", 1, 0)]
    path = _write_csv(tmp_path / "late.csv", rows, header="a,b,c,label")
    with pytest.raises(data.BadDataError, match="line 70002"):
        data.load(path, memory_budget=100, cache_dir=str(tmp_path / "cache"))
    assert not list((tmp_path / "cache").iterdir())


def _image_folder(root, classes=("cat", "dog"), per_class=6, size=(6, 5), channels=3, seed=0):
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        os.makedirs(root / name, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (*size, channels), dtype=np.uint8)
            tf.io.write_file(str(root / name / f"{i}.png"), tf.io.encode_png(pixels))
    return str(root)


def test_an_image_folder_with_train_and_test_keeps_its_test_split(tmp_path):
    _image_folder(tmp_path / "photos" / "train", per_class=10)
    _image_folder(tmp_path / "photos" / "test", per_class=3, seed=1)
    splits = data.load(str(tmp_path / "photos"), dev_fraction=0.25)
    info = splits.info
    assert info.class_names == ("cat", "dog") and info.input_shape == (6, 5, 3)
    assert (info.num_train, info.num_dev, info.num_test) == (15, 5, 6) and info.notes == ()
    x, y = _arrays(splits.test)
    expected = tf.io.decode_png(tf.io.read_file(str(tmp_path / "photos/test/dog/0.png"))).numpy()
    np.testing.assert_array_equal(x[3], expected.astype(np.float32))  # pixels 0-255 as stored
    assert y.tolist() == [0, 0, 0, 1, 1, 1]


def test_an_image_folder_without_test_holds_one_out_and_resizes_on_request(tmp_path):
    folder = _image_folder(tmp_path / "flat", classes=("a", "b", "c"), per_class=10)
    splits = data.load(folder, image_size=(4, 4))
    assert splits.info.input_shape == (4, 4, 3) and splits.info.notes
    assert _arrays(splits.train)[0].shape == (18, 4, 4, 3)


@pytest.mark.parametrize("make, message", [
    (lambda root: _image_folder(root, classes=("only",)), r"at least two\. Received: dataset=.* with 1 subfolder: only"),
    (lambda root: (_image_folder(root), os.makedirs(root / "empty")), r"class folder 'empty' must hold images"),
])
def test_a_bad_image_folder_is_named(tmp_path, make, message):
    make(tmp_path / "images")
    with pytest.raises(data.BadDataError, match=message):
        data.load(str(tmp_path / "images"))


@pytest.mark.parametrize("spoil, message", [
    (lambda path: path.write_bytes(b"not an image"), r"cat/2\.png must be an image of shape \(6, 5, 3\)"),
    (lambda path: tf.io.write_file(str(path), tf.io.encode_png(np.zeros((7, 5, 3), np.uint8))),
     r"cat/2\.png must be an image of shape \(6, 5, 3\)"),
])
def test_an_unreadable_or_odd_image_is_named_before_training(tmp_path, spoil, message):
    folder = _image_folder(tmp_path / "images")
    spoil(tmp_path / "images" / "cat" / "2.png")
    splits = data.load(folder, dev_fraction=0.25)
    with pytest.raises(data.BadDataError, match=message):
        data.prepare(splits, 1, str(tmp_path / "cache"))  # streamed: checked file by file


def test_tf_data_pipelines_give_their_tail_as_dev_and_test(tmp_path):
    x, y = _labelled(100)
    train = tf.data.Dataset.from_tensor_slices((x, y))
    splits = data.from_datasets(train, dev_fraction=0.1, name="pipeline")
    assert (splits.info.num_train, splits.info.num_dev, splits.info.num_test) == (80, 10, 10)
    np.testing.assert_array_equal(_arrays(splits.dev)[0], x[80:90])
    np.testing.assert_array_equal(_arrays(splits.test)[0], x[90:])
    assert splits.info.num_classes == 3


def test_placement_holds_what_fits_and_copies_an_ordered_training_split_that_does_not(tmp_path):
    x, y = _labelled(100)
    splits = data.from_datasets(tf.data.Dataset.from_tensor_slices((x, y)), dev_fraction=0.1)
    small = 80 * 3 * 4  # the training split's bytes: it alone fits
    prepared = data.prepare(splits, small, str(tmp_path / "cache"))
    assert prepared.in_memory("train") and not prepared.in_memory("dev")
    assert "train 80 x (3,) in memory; dev 10 x (3,) streamed from tf.data" in prepared.summary
    tight = data.prepare(splits, 100, str(tmp_path / "cache"))
    assert isinstance(tight.splits["train"], files.FileSplit)  # copied: readable by position
    np.testing.assert_array_equal(_arrays(tight.splits["train"])[0], x[:80])
    # The statistics are the same wherever the split is.
    np.testing.assert_array_equal(tight.info.mean, prepared.info.mean)
    np.testing.assert_array_equal(tight.info.variance, prepared.info.variance)


def test_streamed_splits_are_checked_like_those_in_memory(tmp_path):
    x, y = _labelled(50)
    x[33, 1] = np.nan
    train = ArraySplit(x, y)
    splits = data.Splits(train, ArraySplit(x[:5], y[:5]), ArraySplit(x[:5], y[:5]),
                         data.DatasetInfo("spoilt", 3, (3,), 50, 5, 5))
    for budget in (2**20, 1):  # all in memory; all streamed
        with pytest.raises(data.BadDataError, match=r"^dataset spoilt, split train, example 33: "
                           r"feature \[1\] is not finite, nan"):
            data.prepare(splits, budget, str(tmp_path))

"""Trains a tfnet classifier, logs it to TensorBoard and exports a SavedModel.

    python scripts/train.py                      # the main job: two moons, embedded, no download
    python scripts/train.py --dataset=mnist_t10k --data_dir=../shared/tfds --hidden_units=256,128
    python scripts/train.py --dataset=data/iris.csv --label_column=species   # your own data
    python scripts/train.py --dataset=photos/ --model=cnn --batch_norm       # a folder of images
    python scripts/train.py --flagfile=runs/<dataset>-<optimizer>-<digest>/flags.txt   # a run again

Every flag is checked before any work: an invalid value exits with status 1 and one line naming
the flag, the value and what is allowed. `--helpfull` lists every flag with its help.

Exit status: 0 done; 1 bad flags, data or model (named by split, example and value), unusable
--model_dir / --export_dir (nothing written), a --model_dir another run is writing, or no readable
checkpoint to resume from (damaged ones are moved aside, each named in a warning); 3 a
non-finite cost or gradient (the last good checkpoint is kept); 128 + N when signal N (SIGINT
130, SIGTERM 143) stopped training after a checkpoint: run the same command to resume.
"""

from absl import app, flags, logging

from tfnet import flags as tfnet_flags

tfnet_flags.define_train_flags()
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = tfnet_flags.train_config_from_flags(FLAGS)
    logging.set_verbosity(logging.WARNING)  # TensorFlow's SavedModel writer logs every file.
    from tfnet import training  # After validation: TensorFlow loads only for real work.

    result = training.train(config)  # a TfnetError is one line and its exit status (tfnet.flags.run)
    print(f"TensorBoard logs: {result.run_dir}  (open with: tensorboard --logdir {result.run_dir})")
    print(f"Flags of this run: {result.run_dir}/flags.txt  (reproduce with --flagfile=...)")
    if result.export_path:
        print(f"SavedModel: {result.export_path}  (serving_default takes raw inputs)")
    return 0


if __name__ == "__main__":
    tfnet_flags.run(main, fast_exit=True)

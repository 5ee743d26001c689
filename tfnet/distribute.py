"""``tf.distribute`` strategies by name, for one device, several GPUs, TPUs and several machines.

- ``default``: the default strategy, one device.
- ``mirrored``: ``MirroredStrategy`` over every local GPU, or over ``cpu_devices`` logical CPU
  devices (the CPU split before TensorFlow starts, to try data parallelism without a GPU).
- ``multi_worker``: ``MultiWorkerMirroredStrategy`` over the machines that the ``TF_CONFIG``
  environment variable lists (every worker runs the same command; worker 0 is the chief).
- ``tpu``: ``TPUStrategy`` on the TPU at ``tpu`` (a name or ``grpc://`` address; "" or "local"
  for a TPU VM).

In every case ``--batch_size`` is the global batch: each of the R replicas gets b/R examples
and ``tfnet.training`` averages the per-example losses over the global batch.
"""

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def split_cpu(count):
    """Splits the first physical CPU into ``count`` logical devices (before TF initialises)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    existing = tf.config.get_logical_device_configuration(cpu)
    if existing and len(existing) == count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError as error:
        raise RuntimeError(
            f"cpu_devices={count} must be set before TensorFlow initialises its devices: {error}"
        ) from None


def make_strategy(name, tpu=None, cpu_devices=0):
    """The strategy called ``name`` (one of ``STRATEGIES``).

    Args:
      name: strategy name.
      tpu: the TPU's name or address, for ``name="tpu"``.
      cpu_devices: with ``mirrored`` and no GPU, split the CPU into this many logical devices
        and mirror over them; 0 leaves the CPU whole. Default 0.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}. Received: strategy={name!r}")
    if cpu_devices > 1:
        split_cpu(cpu_devices)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = None
        if not tf.config.list_physical_devices("GPU") and cpu_devices > 1:
            devices = [f"/cpu:{i}" for i in range(cpu_devices)]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy):
    """True on the worker that writes checkpoints, summaries and exports (always, off cluster)."""
    return strategy.extended.should_checkpoint

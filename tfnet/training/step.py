"""The one training step, and the evaluation of a whole split.

The cost of one mini-batch of m examples (docs/methods.md §3, §11):

    J = (1/m) Σ_i CE(y_i, z_i) + Σ_l (λ/2m) ‖W[l]‖²_F + Σ_k R_k(w_k),   CE(y, z) = −z_y + log Σ_j exp(z_j)

with z the logits of the model in training mode, the L2 terms those of tfnet's layers and the
R_k the Keras regularizers a user's layers carry (``kernel_regularizer``;
``tfnet.model.regularization_cost``). Under ``tf.distribute`` with R replicas each
replica computes its share, ``Σ_{i in its examples} CE / m + (λ/2m) Σ‖W‖² / R`` with m the
*global* batch size (all-reduced, so a smaller last batch is averaged right), and the
regularisation divided by R; the optimiser sums the replicas' gradients, which is the gradient
of J. The regularisation is computed from the weights, not read from ``model.losses``: Keras keeps each layer's added losses in one list that the
replica threads share, and synchronized BatchNorm's all-reduce interleaves the threads in the
middle of the forward pass, so one replica could read another's terms.

``make_train_step`` builds the step that every training path runs (``tfnet.training.Trainer``,
``tfnet.compare``, the benchmarks): J, its gradient, and the update, applied only when J and
every gradient are finite on every replica (a branch, or for tfnet's optimisers on one device a
mask that multiplies every increment by 1 or 0: ``tfnet.optimizers.masking``). It is plain graph code meant to run inside the
compiled loop of ``tfnet.training.loop``.
"""

import tensorflow as tf

from tfnet import model as model_lib


def cross_entropy(labels, logits):
    """Per-example softmax cross-entropy from logits, −log ŷ_y computed with log-sum-exp."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def replica_cost(model, features, labels, global_batch_size, num_replicas=1):
    """One replica's share of J: ``Σ CE / m + (regularisation) / R`` with m =
    ``global_batch_size``.

    With one replica this is J itself. ``global_batch_size`` is a float tensor (the examples of
    the whole global mini-batch, on every replica); ``num_replicas`` is R.
    """
    logits = model(features, training=True)
    loss = tf.reduce_sum(cross_entropy(labels, logits)) / global_batch_size
    return loss + model_lib.regularization_cost(model, global_batch_size) / num_replicas


def make_train_step(model, optimizer, strategy=None):
    """The training step: ``train_step(take) -> (cost, finite)``.

    ``take(replica_id, num_replicas) -> (features, labels)`` gives the calling replica its part
    of one global mini-batch (the whole batch with one replica); ``replica_id`` is an int32
    tensor. The step computes J (``replica_cost`` summed over the replicas) and its gradient,
    and applies the optimiser's update only when J and every gradient are finite on every
    replica. It returns J, computed before the update, and whether the update was applied.

    Args:
      model: the Keras model, built, in ``strategy``'s scope.
      optimizer: a Keras optimiser, built on ``model.trainable_variables``.
      strategy: the ``tf.distribute`` strategy. Default: the current one (one device).
    """
    strategy = strategy or tf.distribute.get_strategy()
    variables = model.trainable_variables

    def replica_gradients(take):
        context = tf.distribute.get_replica_context()
        features, labels = take(context.replica_id_in_sync_group, context.num_replicas_in_sync)
        examples = tf.cast(tf.shape(labels)[0], tf.float32)
        global_batch_size = context.all_reduce("sum", examples)
        with tf.GradientTape() as tape:
            cost = replica_cost(model, features, labels, global_batch_size,
                                context.num_replicas_in_sync)
        gradients = tape.gradient(cost, variables)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
        return cost, 1.0 - tf.cast(finite, tf.float32), gradients

    def replica_apply(gradients):
        optimizer.apply_gradients(zip(gradients, variables))

    # tfnet's optimisers on one device take the guard's decision as a mask (no branch: see
    # tfnet.optimizers.masking); Keras' own, and any optimiser under several replicas, a cond.
    masked = (strategy.num_replicas_in_sync == 1
              and getattr(optimizer, "supports_update_mask", False))

    def train_step(take):
        cost, nonfinite, gradients = strategy.run(replica_gradients, args=(take,))
        cost = strategy.reduce("sum", cost, axis=None)
        finite = tf.logical_and(
            strategy.reduce("sum", nonfinite, axis=None) == 0, tf.math.is_finite(cost)
        )
        if masked:
            # Zeroed where not finite, so every masked increment is finite (NaN · 0 is NaN).
            safe = [tf.where(finite, g, tf.zeros_like(g)) for g in gradients]
            with optimizer.masked_by(finite):
                optimizer.apply_gradients(zip(safe, variables))
            # apply_gradients counted the step: a dropped one is taken back (t stays put).
            optimizer.iterations.assign_sub(1 - tf.cast(finite, optimizer.iterations.dtype))
            return cost, finite

        def apply():
            strategy.run(replica_apply, args=(gradients,))
            return tf.constant(True)

        # As in Keras' LossScaleOptimizer: the cond sits in cross-replica context, because a
        # replica-context cond cannot hold the optimiser's merge_call.
        tf.cond(finite, apply, lambda: tf.constant(False))
        return cost, finite

    return train_step


def make_evaluate(model, chunk_size=1024):
    """``evaluate(*splits) -> ((mean loss, accuracy), ...)``: splits held in memory
    (``tfnet.data.Examples``) evaluated in one compiled call, the training and dev splits of an
    epoch together.

    The model runs in inference mode (BatchNorm's running averages, no dropout) over chunks of
    ``chunk_size`` examples inside the call; per-chunk sums are added in float64. Returns
    float64 scalars, a pair per split.
    """

    def one_split(features, labels):
        count = tf.shape(labels, out_type=tf.int64)[0]

        def body(start, loss, correct):
            stop = tf.minimum(start + chunk_size, count)
            chunk_loss, hits = _sums(model, features[start:stop], labels[start:stop])
            return stop, loss + chunk_loss, correct + hits

        zero = tf.constant(0.0, tf.float64)
        _, loss, correct = tf.while_loop(
            lambda start, *_: start < count, body, (tf.constant(0, tf.int64), zero, zero)
        )
        total = tf.cast(count, tf.float64)
        return loss / total, correct / total

    @tf.function(reduce_retracing=True, autograph=False)  # one trace for splits of any size
    def evaluate_splits(splits):
        return tuple(one_split(features, labels) for features, labels in splits)

    def evaluate(*splits):
        return evaluate_splits(tuple(tuple(split) for split in splits))

    return evaluate


def make_evaluate_stream(model):
    """``evaluate(batches) -> (mean loss, accuracy)`` over a ``tf.data.Dataset`` of
    ``(features, labels)`` batches (a split streamed from disk), in one compiled call, as
    ``make_evaluate`` computes it for a split in memory."""

    @tf.function(reduce_retracing=True)
    def evaluate(batches):
        zero = tf.constant(0.0, tf.float64)
        loss, correct, count = zero, zero, zero
        for features, labels in batches:
            chunk_loss, hits = _sums(model, features, labels)
            loss, correct = loss + chunk_loss, correct + hits
            count += tf.cast(tf.shape(labels)[0], tf.float64)
        return loss / count, correct / count

    return evaluate


def _sums(model, features, labels):
    """Σ CE and the number of correct predictions of one chunk, in inference mode, as float64."""
    logits = model(features, training=False)
    loss = tf.reduce_sum(cross_entropy(labels, logits))
    hits = tf.equal(tf.argmax(logits, axis=-1, output_type=labels.dtype), labels)
    return tf.cast(loss, tf.float64), tf.reduce_sum(tf.cast(hits, tf.float64))

"""The mini-batch costs the loop logged, to TensorBoard."""


class BatchCostSummaries:
    """After each call: ``batch_cost`` at each logged step (``outputs.log_batch_costs``), so
    TensorBoard gets the same points for any K."""

    def __init__(self, outputs):
        self.outputs = outputs

    def __call__(self, output):
        self.outputs.log_batch_costs(output.logged)

"""Training on the real, shipped MNIST: one epoch must already reach a real accuracy."""

from lenet_tf.data import split
from lenet_tf.train import TrainConfig, train
from lenet_tf.trained import TrainedModel


def test_one_epoch_on_real_mnist_reaches_97_percent(tmp_path, real_mnist):
    splits = split(real_mnist, valid_size=5000, seed=0)
    result = train(TrainConfig(epochs=1), tmp_path / "real", splits=splits, progress=False)
    assert result.test_accuracy >= 0.97
    assert result.valid_accuracy >= 0.97
    with TrainedModel(tmp_path / "real") as model:
        assert model.predict(real_mnist.test_images).accuracy(splits.test_labels) == result.test_accuracy

import numpy as np
import pytest
from reference import conv2d_valid, lenet5_forward, max_pool_2x2

from lenet_tf import LeNet5
from lenet_tf.training.trainer import kernels_named
from lenet_tf.core.tf import tf, tf1
from lenet_tf.core.errors import CheckpointError

PLAIN_NAMES = [f"lenet5/{layer}/{kind}" for layer in ("conv1", "conv2", "fc1", "fc2", "logits")
               for kind in ("weights", "biases")]


def images_placeholder():
    return tf1.placeholder(tf.float32, [None, 32, 32, 1])


def random_images(n=4, seed=0):
    return np.random.default_rng(seed).random((n, 32, 32, 1), dtype=np.float32)


@pytest.fixture
def graph():
    with tf.Graph().as_default() as g:
        yield g


def test_shapes_names_and_parameter_count(graph):
    net = LeNet5()
    logits = net(images_placeholder())
    assert logits.shape.as_list() == [None, 10]
    assert [v.op.name for v in net.variables] == PLAIN_NAMES
    assert net.count_params() == 61706
    shapes = {name: net.endpoints[name].shape.as_list()[1:] for name in net.endpoints}
    assert shapes == {"conv1": [14, 14, 6], "conv2": [5, 5, 16], "flatten": [400], "fc1": [120],
                      "fc2": [84], "logits": [10]}


def test_two_calls_share_weights_and_agree(graph):
    net = LeNet5()
    x = images_placeholder()
    first = net(x)
    variables_after_one = list(net.variables)
    second = net(tf.identity(x))
    assert net.variables == variables_after_one
    assert len(tf1.global_variables()) == 10
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        a, b = session.run([first, second], {x: random_images()})
    np.testing.assert_array_equal(a, b)


def test_two_instances_coexist_with_separate_weights(graph):
    x = images_placeholder()
    one, two = LeNet5(), LeNet5()
    out_one, out_two = one(x), two(x)
    assert one.scope_name == "lenet5" and two.scope_name == "lenet5_1"
    assert not set(one.variables) & set(two.variables)
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        a, b = session.run([out_one, out_two], {x: random_images()})
    assert not np.allclose(a, b)


def test_works_on_a_tf_data_element_and_another_nets_output(graph):
    dataset = tf.data.Dataset.from_tensor_slices(random_images(8)).batch(4)
    element = tf1.data.make_one_shot_iterator(dataset).get_next()
    upstream = tf1.get_variable("upstream_scale", [], initializer=tf1.ones_initializer())
    net = LeNet5()
    logits = net(element * upstream)
    loss = tf.reduce_sum(logits)
    gradient = tf.gradients(loss, [upstream])[0]
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        value = session.run(gradient)
    assert np.isfinite(value) and abs(value) > 1e-6, "gradients flow back into the upstream network"


@pytest.mark.parametrize("training", [False, True], ids=["inference-order", "training-order"])
def test_matches_numpy_reference(graph, training):
    # Inference runs the textbook order; training pools before bias and ReLU: both must be the same function.
    net = LeNet5(init_stddev=0.3)
    x = images_placeholder()
    logits = net(x, training=training)
    images = random_images(3)
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        # Random biases so that the pool-before-bias ordering is really exercised.
        for v in net.variables:
            if v.op.name.endswith("biases"):
                v.load(np.random.default_rng(1).normal(0, 0.3, v.shape.as_list()), session)
        params = {v.op.name[len("lenet5/"):]: session.run(v) for v in net.variables}
        got = session.run(logits, {x: images})
    expected = lenet5_forward(images.astype(np.float64), params)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_helpers_match_numpy_conv_and_pool(graph):
    rng = np.random.default_rng(2)
    images = rng.normal(size=(2, 14, 14, 6)).astype(np.float32)
    weights = rng.normal(size=(5, 5, 6, 16)).astype(np.float32)
    conv = LeNet5.conv2d(tf.constant(images), tf.constant(weights))
    pooled = LeNet5.max_pool(conv)
    with tf1.Session() as session:
        got_conv, got_pool = session.run([conv, pooled])
    np.testing.assert_allclose(got_conv, conv2d_valid(images, weights), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_pool, max_pool_2x2(conv2d_valid(images, weights)), rtol=1e-4, atol=1e-4)


def test_restore_into_another_graph_with_other_variables(tmp_path):
    images = random_images(5)
    with tf.Graph().as_default():
        net = LeNet5(seed=7)
        x = images_placeholder()
        logits = net(x)
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            expected = session.run(logits, {x: images})
            prefix = net.saver().save(session, str(tmp_path / "weights"))
    with tf.Graph().as_default():
        other = tf1.get_variable("classifier_head", [10, 3], initializer=tf1.ones_initializer())
        x = images_placeholder()
        # "lenet5" and "digits": both load the same file, also into the other kernels (same variables)
        first, renamed = LeNet5(), LeNet5("digits", kernels="matmul")
        head = tf.matmul(renamed(x), other)
        first_logits, renamed_logits = first(x), renamed(x)
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            first.restore(session, prefix)
            renamed.restore(session, prefix, checkpoint_scope="lenet5")
            got_first, got_renamed, head_value = session.run([first_logits, renamed_logits, head], {x: images})
            np.testing.assert_array_equal(session.run(other), np.ones((10, 3)))
    np.testing.assert_allclose(got_first, expected, rtol=1e-6)
    np.testing.assert_allclose(got_renamed, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(head_value, expected @ np.ones((10, 3)), rtol=1e-5)


def test_restore_of_another_architecture_is_a_clear_error(tmp_path):
    with tf.Graph().as_default():
        net = LeNet5()
        net(images_placeholder())
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            prefix = net.saver().save(session, str(tmp_path / "plain"))
    with tf.Graph().as_default():
        net = LeNet5(batch_norm=True)
        net(images_placeholder())
        with tf1.Session() as session, pytest.raises(CheckpointError, match="does not hold this LeNet5's variables"):
            net.restore(session, prefix)
    with tf.Graph().as_default():
        net = LeNet5(num_classes=5)
        net(images_placeholder())
        with tf1.Session() as session, pytest.raises(CheckpointError, match="does not hold this LeNet5's variables"):
            net.restore(session, prefix)


def test_batch_norm_modes_and_moving_averages(graph):
    net = LeNet5(batch_norm=True, dropout=0.5, seed=0)
    x = images_placeholder()
    train_logits = net(x, training=True)
    updates = list(net.update_ops)
    infer_logits = net(x, training=False)  # an inference call after the training one keeps its updates
    assert len(updates) == 8 and net.update_ops == updates
    assert tf1.get_collection(tf1.GraphKeys.UPDATE_OPS) == updates
    moving = [v for v in net.variables if "moving_mean" in v.op.name]
    assert len(moving) == 4 and not set(moving) & set(net.trainable_variables)
    images = random_images(8)
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        before = session.run(infer_logits, {x: images})
        session.run(updates, {x: images})
        after = session.run(infer_logits, {x: images})
        assert not np.allclose(before, after), "updating the moving averages changes inference"
        np.testing.assert_array_equal(after, session.run(infer_logits, {x: images}))
        assert not np.allclose(session.run(train_logits, {x: images}), after)


def test_shards_give_the_same_loss_and_gradients_with_batch_norm(graph):
    net = LeNet5(batch_norm=True, seed=0)
    x = images_placeholder()
    labels = tf1.placeholder(tf.int32, [None])
    builds = []
    for shards in (1, 2, 3):  # 10 images: one batch, 5 + 5, 3 + 3 + 4
        logits = net(x, training=True, shards=shards)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        builds.append((loss, tf.gradients(loss, net.trainable_variables), net.update_ops[-8:]))
    moving = [v for v in net.variables if "moving" in v.op.name]
    feed = {x: random_images(10), labels: np.arange(10) % 10}
    results = []
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        for loss, gradients, updates in builds:
            session.run([v.initializer for v in moving])
            session.run(updates, feed)
            results.append((*session.run([loss, gradients], feed), session.run(moving)))
    loss_1, gradients_1, moving_1 = results[0]
    assert max(np.abs(g).max() for g in gradients_1) > 1e-3  # real gradients, not zeros
    for loss_k, gradients_k, moving_k in results[1:]:  # the whole batch's statistics, however it is split
        assert loss_k == pytest.approx(loss_1, rel=1e-5)
        for a, b in zip(gradients_1 + moving_1, gradients_k + moving_k):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_get_config_rebuilds_the_same_network(graph):
    net = LeNet5("n", activation="elu", dropout=0.2, batch_norm=True, init_stddev=0.05)
    assert LeNet5(**net.get_config()).get_config() == net.get_config()


@pytest.mark.parametrize("kwargs, message", [
    ({"activation": "swish"}, "activation must be one of"),
    ({"dropout": 1.0}, "dropout must be a finite number in"),
    ({"num_classes": 1}, r"num_classes must be in \[2, 2147483647\], got 1"),
    ({"init_stddev": 0}, "init_stddev must be a finite number > 0"),
    ({"name": ""}, "name must be a non-empty string"),
    ({"input_std": 0}, "input_std must be a finite number > 0"),
    ({"input_std": float("inf")}, "input_std must be a finite number > 0"),
    ({"input_mean": float("inf")}, "input_mean must be a finite number, got inf"),
    ({"bn_epsilon": float("nan")}, "bn_epsilon must be a finite number > 0"),
    ({"num_classes": 10**30}, r"num_classes must be in \[2, 2147483647\]"),
    ({"num_classes": 10.0}, "num_classes must be an int, got 10.0"),
    ({"kernels": "fft"}, "kernels must be one of nn, forward_grad, matmul or a Kernels object"),
    ({"kernels": "native"}, r"native ones: lenet_tf.core.native_ops.kernels\(\)"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LeNet5(**kwargs)


def test_bad_input_shape_and_eager_use(graph):
    with pytest.raises(ValueError, match=r"\[N, 32, 32, 1\]"):
        LeNet5()(tf1.placeholder(tf.float32, [None, 28, 28, 1]))


def test_eager_call_is_refused():
    with pytest.raises(RuntimeError, match="builds TF1 graph ops"):
        LeNet5()(tf.zeros([1, 32, 32, 1]))


def test_an_instance_is_bound_to_one_graph():
    net = LeNet5()
    with tf.Graph().as_default():
        net(images_placeholder())
    with tf.Graph().as_default(), pytest.raises(RuntimeError, match="bound to another graph"):
        net(images_placeholder())


@pytest.mark.parametrize("kernels", ["matmul", "forward_grad", pytest.param("native", marks=pytest.mark.native)])
def test_other_kernels_give_the_same_logits_loss_and_gradients(graph, kernels):
    """The im2col/reshape and forward-gradient kernels against tf.nn's and the NumPy reference, same variables."""
    x, labels = images_placeholder(), tf1.placeholder(tf.int32, [None])
    builds = []
    for kernels in ("nn", kernels):
        net = LeNet5(f"net_{kernels}", kernels=kernels_named(kernels), init_stddev=0.3, seed=0)
        logits = net(x, training=True, shards=2)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        builds.append((net, [net(x), loss, tf.gradients(loss, net.trainable_variables)]))
    images, feed_labels = random_images(6), np.arange(6) % 10
    with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        rng = np.random.default_rng(1)
        values = [rng.normal(0, 0.3, v.shape.as_list()) for v in builds[0][0].variables]
        for net, _ in builds:  # the same weights, and biases that exercise pooling before the bias
            for v, value in zip(net.variables, values):
                v.load(value, session)
        (logits_nn, loss_nn, grads_nn), (logits_mm, loss_mm, grads_mm) = (
            session.run(fetches, {x: images, labels: feed_labels}) for _, fetches in builds)
    params = {v.op.name.split("/", 1)[1]: value for v, value in zip(builds[0][0].variables, values)}
    np.testing.assert_allclose(logits_mm, lenet5_forward(images.astype(np.float64), params), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(logits_mm, logits_nn, rtol=1e-5, atol=1e-5)
    assert loss_mm == pytest.approx(loss_nn, rel=1e-5)
    assert min(np.abs(g).max() for g in grads_nn) > 1e-3  # every layer gets a real gradient
    for a, b in zip(grads_nn, grads_mm):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)

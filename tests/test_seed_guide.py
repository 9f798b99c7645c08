"""The seed guide (shared/seed/candle-neural-networks-guide.txt), step by step, in tritonnn on "cpu"."""
import math

import numpy as np
import pytest
import torch

import tritonnn as tn
import tritonnn.nn.functional as F
from tritonnn.data import DataLoader, Dataset

X_TRAIN = [[-1.2, 3.1], [-0.9, 2.9], [-0.5, 2.6], [2.3, -1.1], [2.7, -1.5]]
Y_TRAIN = [0, 0, 0, 1, 1]
X_TEST = [[-0.8, 2.8], [2.6, -1.6]]
Y_TEST = [0, 1]


# -- "Creating Tensors", "Tensor Data Types", "Changing Data Types" -----------------------------


def test_tensor_creation_and_dtypes():
    tensor0d = tn.tensor(1)
    tensor1d = tn.tensor([1, 2, 3])
    tensor2d = tn.tensor([[1, 2], [3, 4]])
    tensor3d = tn.tensor([[[1, 2], [3, 4]], [[5, 6], [7, 8]]])
    assert [t.ndim for t in (tensor0d, tensor1d, tensor2d, tensor3d)] == [0, 1, 2, 3]
    assert tensor1d.dtype is tn.int64 and str(tensor1d.dtype) == "int64"
    floatvec = tn.tensor([1.0, 2.0, 3.0])
    assert floatvec.dtype is tn.float32
    t = tn.tensor([1.0, 2.0, 3.0], dtype=tn.float64)
    assert str(t.dtype) == "float64"
    t = t.to_dtype(tn.float32)
    assert str(t.dtype) == "float32"
    t = t.to(tn.uint8)
    assert str(t.dtype) == "uint8" and t.tolist() == [1, 2, 3]


# -- "Common Tensor Operations" -----------------------------------------------------------------


def test_shape_reshape_transpose_matmul():
    tensor2d = tn.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=tn.float64)
    assert tensor2d.shape == (2, 3)
    assert tensor2d.reshape(3, 2).tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    assert tensor2d.t().tolist() == [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]
    prod = tensor2d.matmul(tensor2d.t())
    assert prod.tolist() == [[14.0, 32.0], [32.0, 77.0]]
    assert (tensor2d @ tensor2d.T).tolist() == [[14.0, 32.0], [32.0, 77.0]]
    assert prod.dtype is tn.float64 and prod.shape == (2, 2)
    assert "shape=(2, 2), dtype=float64, device=cpu" in repr(prod)


# -- "A Concrete Example" and "Computing Gradients" ---------------------------------------------


def test_logistic_regression_gradients():
    y = tn.tensor([1.0], dtype=tn.float64)
    x1 = tn.tensor([1.1], dtype=tn.float64)
    w1 = tn.tensor([2.2], dtype=tn.float64, requires_grad=True)
    b = tn.tensor([0.0], dtype=tn.float64, requires_grad=True)
    z = x1 * w1 + b
    a = z.sigmoid()
    assert a.item() == pytest.approx(1 / (1 + math.exp(-2.42)), abs=1e-12)
    loss = F.binary_cross_entropy_with_logits(z, y)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-2.42)), abs=1e-12)
    grads = loss.backward()
    grad_w1, grad_b = grads[w1], grads[b]
    assert grad_w1.shape == (1,) and grad_w1.dtype is tn.float64
    assert round(grad_w1.item(), 4) == -0.0898
    assert round(grad_b.item(), 4) == -0.0817
    exact_b = 1 / (1 + math.exp(-2.42)) - 1.0
    assert grad_b.item() == pytest.approx(exact_b, abs=1e-12)
    assert grad_w1.item() == pytest.approx(1.1 * exact_b, abs=1e-12)
    # the same with tn.grad, leaving .grad alone
    w2 = tn.tensor([2.2], dtype=tn.float64, requires_grad=True)
    b2 = tn.tensor([0.0], dtype=tn.float64, requires_grad=True)
    gw, gb = tn.grad(F.binary_cross_entropy_with_logits(x1 * w2 + b2, y), [w2, b2])
    assert gw.item() == pytest.approx(grad_w1.item()) and gb.item() == pytest.approx(grad_b.item())
    assert w2.grad is None


# -- "Implementing Multilayer Neural Networks" --------------------------------------------------


class NeuralNetwork(tn.nn.Module):
    def __init__(self, num_inputs, num_outputs):
        super().__init__()
        self.layers = tn.nn.Sequential(
            # 1st hidden layer
            tn.nn.Linear(num_inputs, 30), tn.nn.ReLU(),
            # 2nd hidden layer
            tn.nn.Linear(30, 20), tn.nn.ReLU(),
            # output layer
            tn.nn.Linear(20, num_outputs),
        )

    def forward(self, x):
        return self.layers(x)


def test_multilayer_network():
    tn.manual_seed(123)
    model = NeuralNetwork(50, 3)
    text = repr(model)
    assert text.startswith("NeuralNetwork(") and "(layers): Sequential(" in text
    assert text.count("Linear(") == 3 and text.count("ReLU()") == 2
    num_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert num_params == 2213
    w = model.layers[0].weight
    assert w.shape == (30, 50) and w.dtype is tn.float32
    assert np.abs(w.detach().numpy()).max() <= 1 / math.sqrt(50)
    tn.manual_seed(123)
    again = NeuralNetwork(50, 3)
    np.testing.assert_array_equal(again.layers[0].weight.detach().numpy(), w.detach().numpy())

    x = tn.rand(1, 50)
    out = model(x)
    assert out.shape == (1, 3) and out.dtype is tn.float32 and out.requires_grad
    with tn.no_grad():
        out = model(x)
    assert not out.requires_grad
    probas = tn.softmax(out, dim=1)
    assert probas.shape == (1, 3)
    assert probas.sum(1).item() == pytest.approx(1.0, abs=1e-6)
    assert (probas.numpy() > 0).all()
    # the forward is the usual MLP
    p = [t.detach().numpy() for t in model.parameters()]
    h = np.maximum(x.numpy() @ p[0].T + p[1], 0)
    h = np.maximum(h @ p[2].T + p[3], 0)
    np.testing.assert_allclose(out.numpy(), h @ p[4].T + p[5], atol=1e-6, rtol=1e-5)


def test_softmax_rows_sum_to_one():
    tn.manual_seed(5)
    logits = tn.randn(6, 4) * 10
    probas = F.softmax(logits, dim=1)
    np.testing.assert_allclose(probas.sum(1).numpy(), np.ones(6), atol=1e-6)
    np.testing.assert_array_equal(probas.argmax(1).numpy(), logits.argmax(1).numpy())


# -- "Setting Up Data Loaders" ------------------------------------------------------------------


class ToyDataset(Dataset):
    def __init__(self, x, y):
        self.features = x
        self.labels = y

    def __getitem__(self, index):
        return self.features[index], self.labels[index]

    def __len__(self):
        return self.labels.shape[0]


def toy_data():
    return (tn.tensor(X_TRAIN), tn.tensor(Y_TRAIN), tn.tensor(X_TEST), tn.tensor(Y_TEST))


def test_toy_dataset_and_loader():
    x_train, y_train, x_test, y_test = toy_data()
    train_ds, test_ds = ToyDataset(x_train, y_train), ToyDataset(x_test, y_test)
    assert len(train_ds) == 5 and len(test_ds) == 2
    tn.manual_seed(123)
    train_loader = DataLoader(train_ds, batch_size=2, shuffle=True, drop_last=True)
    test_loader = DataLoader(test_ds, batch_size=2, shuffle=False)
    assert len(train_loader) == 2 and len(test_loader) == 1
    rows = {tuple(np.float32(v) for v in r): lbl for r, lbl in zip(X_TRAIN, Y_TRAIN)}
    seen = []
    for idx, (x, y) in enumerate(train_loader):
        assert x.shape == (2, 2) and x.dtype is tn.float32
        assert y.shape == (2,) and y.dtype is tn.int64
        for r, lbl in zip(x.tolist(), y.tolist()):
            key = tuple(np.float32(v) for v in r)
            assert rows[key] == lbl                 # features and labels stay paired
            seen.append(key)
    assert len(set(seen)) == 4                      # 4 distinct samples, 1 dropped
    (xt, yt), = list(test_loader)
    assert xt.tolist() == [[pytest.approx(-0.8), pytest.approx(2.8)],
                           [pytest.approx(2.6), pytest.approx(-1.6)]]
    assert yt.tolist() == [0, 1]


# -- "A Typical Training Loop", "Making Predictions", "Saving and Loading Models" --------------


def compute_accuracy(model, dataloader):
    model.eval()
    correct, total = 0, 0
    for features, labels in dataloader:
        with tn.no_grad():
            logits = model(features)
        predictions = logits.argmax(dim=1)
        compare = labels == predictions
        correct += compare.sum().item()
        total += len(compare)
    return correct / total


def train(seed, num_epochs=3):
    x_train, y_train, x_test, y_test = toy_data()
    tn.manual_seed(seed)
    train_loader = DataLoader(ToyDataset(x_train, y_train), batch_size=2, shuffle=True,
                              drop_last=True)
    model = NeuralNetwork(num_inputs=2, num_outputs=2)
    init = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    optimizer = tn.optim.SGD(model.parameters(), lr=0.5)
    losses, batches = [], []
    for epoch in range(num_epochs):
        model.train()
        for features, labels in train_loader:
            logits = model(features)
            loss = F.cross_entropy(logits, labels)
            optimizer.backward_step(loss)
            losses.append(loss.item())
            batches.append((features.numpy().copy(), labels.numpy().copy()))
    return model, losses, batches, init


@pytest.mark.parametrize("seed", [123, 0, 7])
def test_training_loop_converges(seed):
    model, losses, _, _ = train(seed)
    assert len(losses) == 6                          # 3 epochs x 2 batches
    assert np.mean(losses[-2:]) < np.mean(losses[:2])
    assert losses[-1] < 0.2
    x_train, y_train, x_test, y_test = toy_data()
    model.eval()
    with tn.no_grad():
        outputs = model(x_train)
    probas = F.softmax(outputs, dim=1)
    np.testing.assert_allclose(probas.sum(1).numpy(), np.ones(5), atol=1e-6)
    predictions = probas.argmax(dim=1)
    assert predictions.tolist() == Y_TRAIN
    assert outputs.argmax(dim=1).tolist() == Y_TRAIN
    assert (predictions == y_train).sum().item() == 5
    train_loader = DataLoader(ToyDataset(x_train, y_train), batch_size=2, shuffle=True)
    test_loader = DataLoader(ToyDataset(x_test, y_test), batch_size=2)
    assert compute_accuracy(model, train_loader) == 1.0
    assert compute_accuracy(model, test_loader) == 1.0


def test_training_is_deterministic_and_matches_torch():
    model, losses, batches, init = train(123)
    _, losses2, _, _ = train(123)
    assert losses == losses2
    # replay the same batches through torch from the same initial weights
    ref = torch.nn.Sequential(torch.nn.Linear(2, 30), torch.nn.ReLU(), torch.nn.Linear(30, 20),
                              torch.nn.ReLU(), torch.nn.Linear(20, 2))
    with torch.no_grad():
        for (n, p) in ref.named_parameters():
            p.copy_(torch.from_numpy(init["layers." + n]))
    opt = torch.optim.SGD(ref.parameters(), lr=0.5)
    for (x, y), ours in zip(batches, losses):
        loss = torch.nn.functional.cross_entropy(ref(torch.from_numpy(x)), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert loss.item() == pytest.approx(ours, rel=1e-4, abs=1e-5)
    for (n, p) in ref.named_parameters():
        np.testing.assert_allclose(model.state_dict()["layers." + n].numpy(),
                                   p.detach().numpy(), atol=1e-5, rtol=1e-4, err_msg=n)


def test_save_and_load_preserve_accuracy(tmp_path):
    model, _, _, _ = train(123)
    x_train, y_train, x_test, y_test = toy_data()
    test_loader = DataLoader(ToyDataset(x_test, y_test), batch_size=2)
    acc = compute_accuracy(model, test_loader)
    path = tmp_path / "model.safetensors"
    tn.save(dict(model.state_dict()), path)
    tn.manual_seed(999)
    loaded = NeuralNetwork(2, 2)
    fresh = loaded.layers[0].weight.detach().numpy()
    assert not np.array_equal(fresh, model.layers[0].weight.detach().numpy())
    loaded.load_state_dict(tn.load(path))
    assert compute_accuracy(loaded, test_loader) == acc == 1.0
    with tn.no_grad():
        np.testing.assert_array_equal(loaded(x_train).numpy(), model(x_train).numpy())
    # an architecture that does not match fails loudly, naming the problem
    with pytest.raises(tn.ShapeError):
        NeuralNetwork(3, 2).load_state_dict(tn.load(path))

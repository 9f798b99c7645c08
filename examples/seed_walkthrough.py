"""The seed guide ("Neural Networks with Candle", after Raschka's PyTorch appendix), step by step in tritonnn.

Run: python examples/seed_walkthrough.py [--device cpu|cuda]
(on a machine without a GPU, TRITONNN_INTERPRET=1 runs device "cuda" through Triton's interpreter).
Every step prints what the guide shows; the script exits non-zero if a check the guide makes fails.
"""
import argparse
import os
import sys
import tempfile

import tritonnn as tn
import tritonnn.nn.functional as F


def section(title):
    print(f"\n== {title} " + "=" * max(0, 60 - len(title)))


class NeuralNetwork(tn.nn.Module):
    """The guide's multilayer perceptron: two hidden layers (30 and 20 units) with ReLU."""

    def __init__(self, num_inputs, num_outputs):
        super().__init__()
        self.layers = tn.nn.Sequential(
            tn.nn.Linear(num_inputs, 30), tn.nn.ReLU(),
            tn.nn.Linear(30, 20), tn.nn.ReLU(),
            tn.nn.Linear(20, num_outputs),
        )

    def forward(self, x):
        return self.layers(x)


class ToyDataset(tn.data.Dataset):
    """The guide's Dataset: one (features, label) record per index."""

    def __init__(self, x, y):
        self.features, self.labels = x, y

    def __getitem__(self, index):
        return self.features[index], self.labels[index]

    def __len__(self):
        return self.labels.shape[0]


def compute_accuracy(model, loader):
    model.eval()
    correct, total = 0, 0
    for features, labels in loader:
        with tn.no_grad():
            logits = model(features)
        predictions = logits.argmax(dim=1)
        correct += (predictions == labels).sum().item()
        total += len(labels)
    return correct / total


def main(device):
    tn.manual_seed(123)

    section("Creating tensors")
    tensor0d = tn.tensor(1, device=device)
    tensor1d = tn.tensor([1, 2, 3], device=device)
    tensor2d = tn.tensor([[1, 2], [3, 4]], device=device)
    tensor3d = tn.tensor([[[1, 2], [3, 4]], [[5, 6], [7, 8]]], device=device)
    for t in (tensor0d, tensor1d, tensor2d, tensor3d):
        print(t)

    section("Tensor data types")
    print(tensor1d.dtype)                                   # int64
    floatvec = tn.tensor([1.0, 2.0, 3.0], dtype=tn.float64, device=device)
    print(floatvec.dtype)                                   # float64
    print(floatvec.to(tn.float32).dtype)                    # float32
    print(floatvec.to(tn.uint8).dtype)                      # uint8

    section("Common tensor operations")
    t2 = tn.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=tn.float64, device=device)
    print(t2)
    print(t2.shape)
    print(t2.reshape(3, 2))
    print(t2.t())
    product = t2.matmul(t2.t())
    print(product)
    assert product.tolist() == [[14.0, 32.0], [32.0, 77.0]]

    section("Logistic regression forward pass and gradients")
    y = tn.tensor([1.0], device=device)
    x1 = tn.tensor([1.1], device=device)
    w1 = tn.tensor([2.2], device=device, requires_grad=True)
    b = tn.tensor([0.0], device=device, requires_grad=True)
    z = x1 * w1 + b
    a = F.sigmoid(z)
    loss = F.binary_cross_entropy_with_logits(z, y)
    print("a =", a.detach(), "loss =", loss.detach())
    grads = loss.backward()
    print(grads[w1])
    print(grads[b])
    assert abs(grads[w1].item() + 0.0898) < 1e-3 and abs(grads[b].item() + 0.0817) < 1e-3

    section("A multilayer perceptron")
    model = NeuralNetwork(50, 3).to(device)
    print(model)
    num_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print("Total number of trainable model parameters:", num_params)
    assert num_params == 2213
    print(model.layers[0].weight)
    print(model.layers[0].weight.shape)

    section("Forward pass and probabilities")
    x = tn.rand(1, 50, device=device)
    with tn.no_grad():
        out = model(x)
    print(out)
    probas = tn.softmax(out, dim=1)
    print(probas)
    assert abs(probas.sum().item() - 1.0) < 1e-5

    section("Datasets and data loaders")
    X_train = tn.tensor([[-1.2, 3.1], [-0.9, 2.9], [-0.5, 2.6], [2.3, -1.1], [2.7, -1.5]], device=device)
    y_train = tn.tensor([0, 0, 0, 1, 1], device=device)
    X_test = tn.tensor([[-0.8, 2.8], [2.6, -1.6]], device=device)
    y_test = tn.tensor([0, 1], device=device)
    train_ds, test_ds = ToyDataset(X_train, y_train), ToyDataset(X_test, y_test)
    print(len(train_ds))
    train_loader = tn.data.DataLoader(train_ds, batch_size=2, shuffle=True, drop_last=True)
    test_loader = tn.data.DataLoader(test_ds, batch_size=2, shuffle=False)
    for idx, (xb, yb) in enumerate(train_loader):
        print(f"Batch {idx + 1}:", xb, yb)

    section("A typical training loop")
    model = NeuralNetwork(2, 2).to(device)
    optimizer = tn.optim.SGD(model.parameters(), lr=0.5)
    num_epochs = 3
    for epoch in range(num_epochs):
        model.train()
        for batch_idx, (features, labels) in enumerate(train_loader):
            logits = model(features)
            loss = F.cross_entropy(logits, labels)
            optimizer.backward_step(loss)
            print(f"Epoch: {epoch + 1:03d}/{num_epochs:03d} | Batch {batch_idx + 1:03d}/"
                  f"{len(train_loader):03d} | Train Loss: {loss.item():.2f}")

    section("Predictions and accuracy")
    model.eval()
    with tn.no_grad():
        outputs = model(X_train)
    print(outputs)
    probas = tn.softmax(outputs, dim=1)
    print(probas)
    predictions = outputs.argmax(dim=1)
    print(predictions)
    print((predictions == y_train).sum())
    train_acc, test_acc = compute_accuracy(model, train_loader), compute_accuracy(model, test_loader)
    print("train accuracy:", train_acc)
    print("test accuracy:", test_acc)
    assert train_acc == 1.0 and test_acc == 1.0, "the guide's model reaches 100% accuracy"

    section("Saving and loading")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.safetensors")
        tn.save(model.state_dict(), path)
        loaded = NeuralNetwork(2, 2).to(device)
        loaded.load_state_dict(tn.load(path, device=device))
    loaded_acc = compute_accuracy(loaded, test_loader)
    print("accuracy after loading:", loaded_acc)
    assert loaded_acc == test_acc
    print("\nthe walkthrough ran end to end on", device)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    sys.exit(main(parser.parse_args().device))

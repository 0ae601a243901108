"""gmdgm_tf: semi-unsupervised learning with deep generative models (GM-DGM, M2 and their
auxiliary versions AGM-DGM and AM2)."""

import setuptools

setuptools.setup(
    name="gmdgm_tf",
    version="0.1.0",
    description=(
        "Reference TensorFlow 2 implementation of semi-unsupervised learning "
        "with deep generative models (GM-DGM, M2, AGM-DGM, AM2)."
    ),
    # The repository on GitHub: the Colab notebooks clone it and their badges (in the
    # notebooks and docs/scaling.md) link to it; tests/test_notebooks.py checks that they
    # all name this URL.
    url="https://github.com/gmdgm-tf/gmdgm_tf",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["gmdgm_tf", "gmdgm_tf.*"]),
    python_requires=">=3.10",
    license="Apache-2.0",
    install_requires=[
        "tensorflow==2.21.*",
        # gmdgm_tf.distribute and checkpoints rely on private Keras hooks and slot names
        # verified on this minor version (tests/test_distribute.py, test_checkpoints.py)
        "keras==3.15.*",
        "tf-keras==2.21.*",  # tensorflow-probability refuses to import without it
        "tensorflow-probability==0.25.*",
        "tensorflow-datasets==4.9.*",
        # tensorflow-datasets 4.9 imports importlib_resources whenever it downloads or
        # prepares a dataset (DatasetBuilder.code_path) but declares it only for Python < 3.9
        "importlib-resources>=6",
        "absl-py>=2.0",
        "ml-collections>=0.1.1",
        "numpy>=1.26",
        "scikit-learn>=1.3",
        "matplotlib>=3.7",
        "tensorboard==2.21.*",
    ],
    extras_require={
        # nbclient + ipykernel: tests/test_notebooks.py executes colab/*.ipynb;
        # pytest-xdist: the suite runs in 2 processes (most of it is TensorFlow start-up in
        # subprocesses, which is single-threaded)
        "test": ["pytest>=8", "pytest-xdist>=3.5", "nbclient>=0.10", "nbformat>=5.9",
                 "ipykernel>=6.29"],
    },
)

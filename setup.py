from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="lenet_tf",
    version="0.1.0",
    description="LeNet-5 on MNIST with TensorFlow's low-level graph API (tf.compat.v1)",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["lenet_tf", "lenet_tf.*"]),
    package_data={"lenet_tf.serving": ["static/*"], "lenet_tf.core": ["native/*.cc", "native/*.h"]},
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "numpy>=1.26",
        "scikit-learn>=1.4",
        "scikit-image>=0.22",
        "tqdm>=4.66",
        "matplotlib>=3.8",
        "pillow>=10.0",
        "ai-edge-litert>=1.2",
    ],
    extras_require={
        "test": ["pytest>=8.0", "pytest-xdist>=3.5", "httpx>=0.27", "selenium>=4.20", "hypothesis>=6.100", "schemathesis>=4.0"],
        "serve": ["fastapi>=0.110", "uvicorn>=0.29", "python-multipart>=0.0.9", "httptools>=0.6",
                  "uvloop>=0.19; sys_platform != 'win32'", "orjson>=3.8"],
        "bench": ["torch"],
    },
    entry_points={"console_scripts": ["lenet-tf=lenet_tf.cli:main"]},
)

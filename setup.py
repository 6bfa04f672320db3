"""Packaging for lra_wavelet (console script ``lra-wavelet``)."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _requirements(name: str) -> list[str]:
  lines = (HERE / name).read_text().splitlines()
  return [l.split("#")[0].strip() for l in lines if l.split("#")[0].strip()]


setup(
    name="lra_wavelet",
    version="0.1.0",
    description="Long Range Arena harness for wavelet-based attention (WavSpA, MRA, WERSA) in JAX/Flax NNX",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["lra_wavelet", "lra_wavelet.*"]),
    install_requires=_requirements("requirements.txt"),
    extras_require={
        # ray[tune] is in the test extra so the local 4-trial sweep test runs in CI.
        "test": ["pytest>=8,<10", "pytest-xdist>=3.5,<4", "ray[tune]>=2.40,<3"],
        "sweep": ["ray[tune]>=2.40,<3"],
    },
    entry_points={"console_scripts": ["lra-wavelet=lra_wavelet.main:run"]},
)

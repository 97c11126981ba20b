"""Maps the design card's top-level folders into the `heedls` import namespace.

server/ -> heedls.server, analyzers/ -> heedls.analyzers; nothing named `server` or `analyzers`
is installed at the top level of site-packages. Everything else lives in pyproject.toml.
"""

from setuptools import find_packages, setup

MAPPED = {"server": "heedls.server", "analyzers": "heedls.analyzers"}

packages = ["heedls"]
for folder, namespace in MAPPED.items():
    packages.append(namespace)
    packages += [f"{namespace}.{sub}" for sub in find_packages(folder)]

setup(
    packages=packages,
    package_dir={"heedls": "heedls", **{ns: folder for folder, ns in MAPPED.items()}},
)

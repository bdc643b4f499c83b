"""Package layout that pyproject.toml cannot express: data directories kept at the top of the repository
(their documented place) are shipped inside the package.

    mappings/*.yaml        -> bridge/shipped/mappings/   the default mappings (`bridge demo`, `bridge init`)
    fixtures/stripe/*.json -> bridge/shipped/stripe/     the demo's Stripe sample webhooks (not the expected files)

Everything else is in pyproject.toml. See docs/adr/0004-package-data.md.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["bridge", "bridge.*"]), "bridge.shipped.mappings", "bridge.shipped.stripe"],
    package_dir={"bridge.shipped.mappings": "mappings", "bridge.shipped.stripe": "fixtures/stripe"},
    package_data={
        "bridge": ["py.typed"],
        "bridge.ops": ["templates/*.html", "static/*"],
        "bridge.shipped.mappings": ["*.yaml"],
        "bridge.shipped.stripe": ["*.json"],
    },
    exclude_package_data={"bridge.shipped.stripe": ["*.expected.json", "*.headers.json"]},
    include_package_data=False,
)

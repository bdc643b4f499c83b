"""Package layout that pyproject.toml cannot express: data directories kept at the top of the repository
(their documented place) are shipped inside the package.

    mappings/*.yaml        -> bridge/shipped/mappings/   the default mappings (`bridge demo`, `bridge init`)
    fixtures/stripe/*.json -> bridge/shipped/stripe/     the demo's Stripe sample webhooks (not the expected files)
    fixtures/<p>/*.json|form -> bridge/shipped/samples/<p>/  the other providers' samples (`bridge demo --source`)

Everything else is in pyproject.toml. See docs/adr/0004-package-data.md.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["bridge", "bridge.*"]),
        "bridge.shipped.mappings",
        "bridge.shipped.stripe",
        "bridge.shipped.samples",
    ],
    package_dir={
        "bridge.shipped.mappings": "mappings",
        "bridge.shipped.stripe": "fixtures/stripe",
        "bridge.shipped.samples": "fixtures",
    },
    package_data={
        "bridge": ["py.typed"],
        "bridge.providers": ["certs/*.cer"],
        "bridge.ops": ["templates/*.html", "static/*"],
        "bridge.shipped.mappings": ["*.yaml"],
        "bridge.shipped.stripe": ["*.json"],
        "bridge.shipped.samples": ["*/*.json", "*/*.form"],
    },
    exclude_package_data={
        "bridge.shipped.stripe": ["*.expected.json", "*.headers.json"],
        "bridge.shipped.samples": ["*/*.expected.json", "stripe/*"],
    },
    include_package_data=False,
)

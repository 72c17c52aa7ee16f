pytest_plugins = ["tests.fixtures.kube"]

pytest_plugins = ["tests.fixtures.kube", "tests.fixtures.servers"]

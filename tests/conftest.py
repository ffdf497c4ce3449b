pytest_plugins = ["tests.support.cameras"]

from tests.zoo.conftest import small_zoo  # noqa: F401  (shared session fixture)

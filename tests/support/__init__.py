"""What the tests share: one raw HTTP client, one wait helper, one server starter, fakes for unit tests."""

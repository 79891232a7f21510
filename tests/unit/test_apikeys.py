from stellargate import apikeys


def test_generated_keys_are_well_formed_and_distinct() -> None:
    keys = {apikeys.generate() for _ in range(200)}
    assert len(keys) == 200
    for k in keys:
        assert k.startswith("sg-")
        assert len(k) == apikeys.KEY_LEN >= 43
        assert apikeys.well_formed(k)


def test_checksum_catches_a_changed_character() -> None:
    k = apikeys.generate()
    i = 10
    other = "A" if k[i] != "A" else "B"
    assert not apikeys.well_formed(k[:i] + other + k[i + 1 :])


def test_malformed_keys() -> None:
    for bad in [
        "",
        "sg-",
        "sk-" + "a" * 46,
        apikeys.generate()[:-1],
        apikeys.generate() + "x",
        "sg-" + "!" * 46,
    ]:
        assert not apikeys.well_formed(bad)


def test_hash_and_prefix_reveal_nothing_usable() -> None:
    k = apikeys.generate()
    h = apikeys.hash_key(k)
    assert len(h) == 64
    assert k not in h
    p = apikeys.display_prefix(k)
    assert k.startswith(p)
    assert len(p) == 11

from stellargate.dialects.sse import SSEDecoder, encode


def test_one_event_per_chunk() -> None:
    d = SSEDecoder()
    evs = d.feed(b'data: {"a":1}\n\n')
    assert [e.data for e in evs] == [b'{"a":1}']
    assert evs[0].raw == b'data: {"a":1}\n\n'


def test_event_split_across_chunks_and_several_in_one() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: he") == []
    assert d.feed(b"llo\n") == []
    evs = d.feed(b"\ndata: two\n\ndata: three\n\n")
    assert [e.data for e in evs] == [b"hello", b"two", b"three"]


def test_crlf_and_split_crlf() -> None:
    d = SSEDecoder()
    evs = d.feed(b"event: message_start\r\ndata: {}\r")
    assert evs == []
    evs = d.feed(b"\n\r\n")
    assert len(evs) == 1
    assert evs[0].event == "message_start"
    assert evs[0].data == b"{}"


def test_multiline_data_comments_and_ids() -> None:
    d = SSEDecoder()
    evs = d.feed(b": keep-alive\n\nid: 7\nevent: x\ndata: a\ndata: b\n\n")
    assert len(evs) == 1
    assert (evs[0].id, evs[0].event, evs[0].data) == ("7", "x", b"a\nb")


def test_unterminated_last_event_is_flushed() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: [DONE]") == []
    assert [e.data for e in d.flush()] == [b"[DONE]"]


def test_encode() -> None:
    assert encode(b"x") == b"data: x\n\n"
    assert encode(b"{}", "ping") == b"event: ping\ndata: {}\n\n"

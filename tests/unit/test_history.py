"""`k3c history`'s rows from an Image status: newest first, sizes only on the steps that made a layer."""

from __future__ import annotations

from k3c.cli.history import history_rows

STATUS = {
    "id": "sha256:" + "ab" * 32,
    "layers": [{"digest": "sha256:1", "size": 2_000_000}, {"digest": "sha256:2", "size": 1234}],
    "history": [
        {"created": "2024-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:abc in / ", "comment": ""},
        {"created": "2024-01-01T00:00:01Z", "created_by": "/bin/sh -c #(nop)\tCMD [\"sh\"]", "empty_layer": True},
        {"created": "2024-01-02T00:00:00Z", "created_by": "/bin/sh -c echo a very long command line that goes on",
         "comment": "built"},
    ],
}


def test_rows_newest_first_with_layer_sizes_and_dockers_truncation() -> None:
    now = 1704240000.0  # 2024-01-03T00:00:00Z
    rows = history_rows(STATUS, human=True, trunc=True, now=now)
    assert [r.ID for r in rows] == ["abababababab", "<missing>", "<missing>"]
    assert [r.Size for r in rows] == ["1.23kB", "0B", "2MB"]
    assert rows[0].CreatedSince == "24 hours ago" and rows[0].Comment == "built"
    assert rows[0].CreatedBy == "/bin/sh -c echo a very long command line tha…" and len(rows[0].CreatedBy) == 45
    assert rows[1].CreatedBy == '/bin/sh -c #(nop) CMD ["sh"]'  # tabs become spaces
    exact = history_rows(STATUS, human=False, trunc=False, now=now)
    assert exact[0].ID == STATUS["id"] and [r.Size for r in exact] == ["1234", "0", "2000000"]
    assert exact[2].CreatedSince == exact[2].CreatedAt and "T" in exact[2].CreatedAt

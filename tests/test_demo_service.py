"""The demo gallery split: enrolled and held-out images never overlap, ids are stable."""

from pathlib import Path

from ufo.demo.service import enroll_items, gallery_and_queries, image_number


def test_face_gallery_is_images_1_to_5_of_each_held_out_person(tiny_demo):
    gallery, queries = gallery_and_queries("face", tiny_demo)
    assert len(gallery) == len(queries) == 12 * 5
    assert {image_number(s) for s in gallery} == {1, 2, 3, 4, 5}
    assert {Path(s.path).parent.name for s in gallery} == {Path(s.path).parent.name for s in queries}
    item = next(enroll_items("face", gallery[:1], tiny_demo))
    assert item["id"].startswith("face/test/s") and item["metadata"]["identity"].startswith("s")


def test_every_task_has_a_disjoint_gallery_and_query_set(tiny_demo):
    for task in ("person", "vehicle", "product"):
        gallery, queries = gallery_and_queries(task, tiny_demo)
        assert gallery and queries
        assert not {s.path for s in gallery} & {s.path for s in queries}
        ids = [i["id"] for i in enroll_items(task, gallery, tiny_demo)]
        assert len(ids) == len(set(ids))


def test_demo_refuses_a_port_in_use():
    import socket
    import subprocess
    import sys

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "ufo_cli", "demo", "--port", str(port)], capture_output=True,
                              text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 2 and f"port {port} is in use" in done.stderr and "--port" in done.stderr

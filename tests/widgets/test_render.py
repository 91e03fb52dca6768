from jupyter_torchlab.widgets import render


def test_decimate_bounds_points_and_keeps_shape():
    values = list(range(1000))
    out = render.decimate(values, 100)
    assert len(out) == 100
    assert out[0] == sum(range(10)) / 10
    assert out[-1] == sum(range(990, 1000)) / 10
    assert render.decimate([1.0, float("nan"), 2.0], 10) == [1.0, 2.0]
    assert render.decimate([1, 2, 3], 0) == []


def test_sparkline_has_at_most_max_points():
    svg = render.sparkline_svg([float(i % 7) for i in range(10_000)], max_points=50)
    points = svg.split('points="')[1].split('"')[0].split()
    assert len(points) == 50
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")
    # an empty series keeps the same box so the layout does not jump
    empty = render.sparkline_svg([], width=80, height=10)
    assert 'width="80"' in empty
    assert "polyline" not in empty
    # values outside a fixed range are clipped into the box
    clipped = render.sparkline_svg([-50, 500], lo=0, hi=100, height=10)
    ys = [float(p.split(",")[1]) for p in clipped.split('points="')[1].split('"')[0].split()]
    assert all(1.0 <= y <= 9.0 for y in ys)


def test_html_escapes_everything_but_raw_columns():
    table = render.html_table(["<h>"], [["<script>x</script>"], ['"q"&']])
    assert "<script>" not in table
    assert "&lt;script&gt;" in table
    assert "&quot;q&quot;&amp;" in table
    assert "&lt;h&gt;" in table
    raw = render.html_table(["a", "b"], [["<b>", "<svg></svg>"]], raw_columns=[1])
    assert "&lt;b&gt;" in raw
    assert "<svg></svg>" in raw
    svg = render.sparkline_svg([1, 2], title="<x>", color='"red')
    assert "<x>" not in svg
    assert "&lt;x&gt;" in svg
    assert '"red' not in svg


def test_status_label_says_where_an_interrupt_landed():
    from jupyter_torchlab.widgets.render import status_label

    assert status_label("interrupted", "37") == "interrupted at 37"
    assert status_label("done", "37") == "done"

"""Small, valid sample files the tests generate instead of committing them."""

from __future__ import annotations

__all__ = ["broken_slides", "tiny_pdf"]


def tiny_pdf(text: str = "Invented consent form") -> bytes:
    """A minimal, valid one-page PDF."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    pdf, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    pdf += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    pdf += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(pdf)


def broken_slides(svs: bytes) -> dict[str, tuple[str, bytes]]:
    """Bad slide inputs made from a real Aperio SVS: ``{case: (uploaded name, bytes)}``.

    A corrupt TIFF (first directory beyond the end), a truncated SVS, a non-slide image
    (PNG), a slide claiming absurd dimensions, and the index files of two multi-file
    formats uploaded without their other parts (MIRAX ``.mrxs``, Hamamatsu ``.vms``).
    """
    import io
    import struct

    from PIL import Image

    corrupt = bytearray(svs)
    corrupt[4:8] = struct.pack("<I", len(svs) + 100)
    absurd = bytearray(svs)
    first = struct.unpack("<I", absurd[4:8])[0]
    for i in range(struct.unpack("<H", absurd[first : first + 2])[0]):
        at = first + 2 + 12 * i
        if struct.unpack("<H", absurd[at : at + 2])[0] == 256:  # ImageWidth := 4,000,000
            absurd[at + 2 : at + 12] = struct.pack("<HII", 4, 1, 4_000_000)
    png = io.BytesIO()
    Image.new("RGB", (64, 48), "pink").save(png, format="PNG")
    vms = (
        b"[Virtual Microscope Specimen]\r\nNoLayers=1\r\nLayer0=\r\nImageFile=slide.jpg\r\n"
        b"ImageFile(1,0)=slide-1-0.jpg\r\nMapFile=slide-map.jpg\r\nSourceLens=20\r\n"
    )
    # a MIRAX .mrxs alone: its Slidedat.ini and Data*.dat files stay in a folder next to it
    mrxs = b"\xff\xd8\xff\xe0" + b"\0" * 300
    return {
        "corrupt-tiff": ("corrupt.svs", bytes(corrupt)),
        "truncated-svs": ("truncated.svs", svs[:1_000_000]),
        "non-slide-image": ("photo.png", png.getvalue()),
        "absurd-dimensions": ("absurd.svs", bytes(absurd)),
        "mrxs-without-folder": ("biopsy.mrxs", mrxs),
        "vms-without-parts": ("biopsy.vms", vms),
    }

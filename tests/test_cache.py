"Image cache: pixels, odd image modes, corrupt files, rebuilds, multi-process and interrupted builds."
import json, os, signal, struct, subprocess, sys, textwrap, time, zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import maskcls.cache as mc
from maskcls.cache import CorruptImageError, ImageCache, build_cache, load_image

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    "Paths of 4 synthetic people (28 photos, mixed extensions)."
    from maskcls.synth import make_dataset
    from maskcls.layout import read_train
    root = tmp_path_factory.mktemp('synth')
    make_dataset(root, people=4, eval_people=0, seed=3, progress=False)
    return list(read_train(root, progress=False).path)


def pil_reference(path, size):
    "Decode + resize done directly with PIL, independently of maskcls."
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert('RGB').resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(im).transpose(2, 0, 1)


def test_pixels_equal_direct_decode(synth, tmp_path):
    cache = build_cache(synth, tmp_path / 'c', size=(64, 48), workers=0, progress=False)
    got = cache.get(synth)
    assert got.shape == (len(synth), 3, 64, 48) and got.dtype == np.uint8
    for p, x in zip(synth, got): np.testing.assert_array_equal(x, pil_reference(p, (64, 48)))
    assert {Path(p).suffix for p in synth} >= {'.jpg'}          # the synthetic set mixes extensions


def test_multiprocess_build_equals_single(synth, tmp_path):
    one = ImageCache(tmp_path / 'one', (32, 24)).update(synth, workers=0, progress=False)
    many = ImageCache(tmp_path / 'many', (32, 24)).update(synth, workers=2, chunk=3, progress=False)
    assert many.report['decoded'] == len(synth)
    np.testing.assert_array_equal(one.get(synth), many.get(synth))


def test_crop_fit(synth, tmp_path):
    c = build_cache(synth[:2], tmp_path, size=(40, 40), fit='crop', workers=0, progress=False)
    with Image.open(synth[0]) as im:
        ref = np.asarray(ImageOps.fit(im.convert('RGB'), (40, 40), Image.BILINEAR)).transpose(2, 0, 1)
    np.testing.assert_array_equal(c.get(synth[:1])[0], ref)


# --- odd modes ----------------------------------------------------------------------------------------

def write_png16_rgb(path, arr):
    "A 48-bit RGB PNG (PIL cannot write one)."
    h, w, _ = arr.shape
    raw = b''.join(b'\x00' + arr[i].astype('>u2').tobytes() for i in range(h))
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    Path(path).write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 16, 2, 0, 0, 0))
                           + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


@pytest.fixture
def odd(tmp_path):
    "Images in every awkward mode, with the RGB values expected at pixel (0, 0) after decoding."
    rgb = np.zeros((30, 40, 3), np.uint8); rgb[..., 0] = 200; rgb[..., 1] = 100; rgb[..., 2] = 50
    files = {}
    def add(name, im, want, **kw): im.save(tmp_path / name, **kw); files[name] = want
    add('grey.png', Image.new('L', (40, 30), 77), [77, 77, 77])
    add('bilevel.png', Image.new('1', (40, 30), 1), [255, 255, 255])
    add('palette.png', Image.fromarray(rgb).convert('P'), None)
    pal = Image.new('P', (40, 30), 1); pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762); pal.info['transparency'] = 1
    add('palette_transparent.png', pal, [255, 255, 255])                # transparent colour -> white background
    rgba = np.dstack([rgb, np.full((30, 40), 255, np.uint8)]); rgba[0, 0, 3] = 0
    add('rgba.png', Image.fromarray(rgba, 'RGBA'), [255, 255, 255])
    la = Image.fromarray(np.dstack([np.full((30, 40), 90, np.uint8), np.full((30, 40), 255, np.uint8)]), 'LA')
    add('la.png', la, [90, 90, 90])
    add('cmyk.jpg', Image.new('CMYK', (40, 30), (0, 0, 0, 0)), None)       # no ink: white
    add('grey16.png', Image.fromarray(np.full((30, 40), 40000, np.uint16)), [40000 >> 8] * 3)
    add('int32.tif', Image.fromarray(np.full((30, 40), 30000, np.int32), 'I'), [30000 >> 8] * 3)
    add('float.tif', Image.fromarray(np.full((30, 40), 123.4, np.float32), 'F'), [123, 123, 123])
    write_png16_rgb(tmp_path / 'rgb48.png', (rgb.astype(np.uint16) * 257)); files['rgb48.png'] = [200, 100, 50]
    return tmp_path, files


def test_odd_modes_decode_to_rgb(odd, tmp_path):
    folder, files = odd
    paths = [folder / n for n in files]
    cache = build_cache(paths, tmp_path / 'cache', size=(30, 40), workers=0, progress=False)
    assert cache.report['failed'] == {} and len(cache) == len(files)
    for name, want in files.items():
        x = cache.get([folder / name])[0]
        assert x.shape == (3, 30, 40)
        if want is not None: assert x[:, 0, 0].tolist() == want, name
    assert cache.get([folder / 'cmyk.jpg']).min() > 240                        # white, not black
    assert np.abs(cache.get([folder / 'palette.png'])[0, :, 5, 5].astype(int) - [200, 100, 50]).max() < 10


@pytest.mark.parametrize('orientation', range(1, 9))
def test_exif_orientation(tmp_path, orientation):
    a = np.zeros((30, 40, 3), np.uint8); a[:5, :5] = 255                    # white corner, stored top-left
    exif = Image.Exif(); exif[0x0112] = orientation
    Image.fromarray(a).save(tmp_path / 'o.png', exif=exif)
    want = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / 'o.png')).convert('RGB'))
    got = load_image(tmp_path / 'o.png')
    assert got.size == (40, 30) if orientation < 5 else got.size == (30, 40)
    np.testing.assert_array_equal(np.asarray(got), want)


# --- corrupt files ------------------------------------------------------------------------------------

@pytest.fixture
def corrupt(synth, tmp_path):
    jpg = next(p for p in synth if p.endswith('.jpg'))
    bad = {'truncated.jpg': Path(jpg).read_bytes()[:3000], 'noise.jpg': os.urandom(5000), 'empty.png': b'',
           'text.jpeg': b'hello'}
    for n, b in bad.items(): (tmp_path / n).write_bytes(b)
    return [str(tmp_path / n) for n in bad] + [str(tmp_path / 'missing.jpg')]


def test_corrupt_files_all_named(synth, corrupt, tmp_path):
    with pytest.raises(CorruptImageError) as e:
        build_cache(synth + corrupt, tmp_path / 'c', (32, 24), workers=2, progress=False)
    assert set(e.value.failed) == set(corrupt)
    msg = str(e.value)
    for p in corrupt: assert Path(p).name in msg
    assert '5 image(s)' in msg and 'on_error="skip"' in msg
    # the good images were kept: the next build only retries the bad ones
    c = ImageCache(tmp_path / 'c', (32, 24))
    assert len(c) == len(synth) and c.has(synth).all()


def test_corrupt_files_skipped_and_counted(synth, corrupt, tmp_path):
    with pytest.warns(UserWarning, match='skipped 5 image'):
        c = build_cache(synth + corrupt, tmp_path / 'c', (32, 24), on_error='skip', workers=0, progress=False)
    assert len(c.report['failed']) == 5 and c.report['decoded'] == len(synth)
    assert c.has(synth + corrupt).tolist() == [True] * len(synth) + [False] * 5
    with pytest.raises(KeyError, match='not in'): c.rows(corrupt[:1])


def test_bad_option():
    with pytest.raises(ValueError, match='on_error'):
        ImageCache('/tmp/x-never-made', (8, 8)).update([], on_error='ignore')


# --- staying in step ------------------------------------------------------------------------------------

def test_rebuild_on_change_and_new_size(synth, tmp_path):
    imgs = []
    for i, p in enumerate(synth[:6]):
        q = tmp_path / 'img' / f'{i}.png'; q.parent.mkdir(exist_ok=True)
        Image.open(p).convert('RGB').save(q); imgs.append(q)
    c = build_cache(imgs, tmp_path / 'c', (32, 24), workers=0, progress=False)
    rows = c.rows(imgs)
    again = build_cache(imgs, tmp_path / 'c', (32, 24), workers=0, progress=False)
    assert (again.report['decoded'], again.report['reused']) == (0, 6)
    Image.new('RGB', (384, 512), (1, 2, 3)).save(imgs[2])                    # new contents
    os.utime(imgs[2], ns=(time.time_ns(), time.time_ns() + 10**9))
    again = build_cache(imgs, tmp_path / 'c', (32, 24), workers=0, progress=False)
    assert (again.report['decoded'], again.report['reused']) == (1, 5)
    assert again.get(imgs[2:3])[0, :, 3, 3].tolist() == [1, 2, 3]
    np.testing.assert_array_equal(again.rows(imgs), rows)                     # rebuilt in place
    other = build_cache(imgs, tmp_path / 'c', (16, 12), workers=0, progress=False)   # another size: its own array
    assert other.report['decoded'] == 6 and other.pixels.shape == (6, 3, 16, 12)
    more = build_cache(imgs + [synth[6]], tmp_path / 'c', (32, 24), workers=0, progress=False)
    assert more.report['decoded'] == 1 and more.rows([synth[6]])[0] == 6       # new paths get new rows
    np.testing.assert_array_equal(more.rows(imgs), rows)


def test_manifest_with_other_settings_starts_afresh(synth, tmp_path):
    build_cache(synth[:3], tmp_path, (16, 12), workers=0, progress=False)
    with pytest.warns(UserWarning, match='starting afresh'):
        c = ImageCache(tmp_path, (16, 12), background=(0, 0, 0))
    assert len(c) == 0
    assert c.update(synth[:3], workers=0, progress=False).report['decoded'] == 3


def test_resume_after_interrupt(synth, tmp_path, monkeypatch):
    calls, real = [0], mc.decode_image
    def flaky(*a, **k):
        calls[0] += 1
        if calls[0] == 11: raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(mc, 'decode_image', flaky)
    with pytest.raises(KeyboardInterrupt):
        ImageCache(tmp_path, (32, 24)).update(synth, workers=0, chunk=4, progress=False)
    saved = json.loads((tmp_path / 'manifest-32x24-stretch.json').read_text())
    assert len(saved['entries']) == 8                                           # two whole chunks were recorded
    monkeypatch.setattr(mc, 'decode_image', real)
    c = ImageCache(tmp_path, (32, 24)).update(synth, workers=0, progress=False)
    assert (c.report['reused'], c.report['decoded']) == (8, len(synth) - 8)
    for p, x in zip(synth, c.get(synth)): np.testing.assert_array_equal(x, pil_reference(p, (32, 24)))


def test_resume_after_killed_multiprocess_build(synth, tmp_path):
    "Kill a 2-process build with SIGKILL part way; the next build reuses what was recorded and ends correct."
    script = textwrap.dedent(f'''
        import sys, time
        import maskcls.cache as mc
        real = mc.decode_image
        def slow(*a, **k): time.sleep(0.15); return real(*a, **k)
        mc.decode_image = slow
        mc.ImageCache({str(tmp_path)!r}, (32, 24)).update({synth!r}, workers=2, chunk=2, save_every=0, progress=False)
    ''')
    proc = subprocess.Popen([sys.executable, '-c', script], cwd=ROOT, start_new_session=True)
    manifest, n = tmp_path / 'manifest-32x24-stretch.json', 0
    try:
        for _ in range(300):
            time.sleep(0.05)
            if manifest.exists():
                try: n = len(json.loads(manifest.read_text())['entries'])
                except (json.JSONDecodeError, KeyError): n = 0
            if n >= 4 or proc.poll() is not None: break
    finally:
        os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    assert 4 <= n < len(synth), n
    c = ImageCache(tmp_path, (32, 24)).update(synth, workers=2, progress=False)
    assert c.report['reused'] >= n and c.report['reused'] + c.report['decoded'] == len(synth)
    for p, x in zip(synth, c.get(synth)): np.testing.assert_array_equal(x, pil_reference(p, (32, 24)))


def test_tensor_view_is_copy_on_write(synth, tmp_path):
    c = build_cache(synth[:2], tmp_path, (16, 12), workers=0, progress=False)
    t = c.tensor(); before = c.get(synth[:1]).copy()
    t[c.rows(synth[:1])[0]] = 0                                                  # writes stay in memory
    np.testing.assert_array_equal(ImageCache(tmp_path, (16, 12)).get(synth[:1]), before)

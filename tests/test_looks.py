"""The full default pipeline and the tunings end to end: issue-level acceptance figures.

- Colour accuracy of ``tuning=neutral`` with the lens shading on (the pipeline corrects it).
- At ISO 3200 the denoisers raise the grey patches' SNR at least 2× while the PSNR against the
  noise-free render of the same scene rises rather than collapsing.
- A real DNG (GoPro HERO6) develops with its OpcodeList2 GainMaps and its two calibrations.
- Every look runs and the monochrome looks are monochrome.
"""

from __future__ import annotations

import numpy as np
import pytest

import isp
from isp.metrics.colorchecker import linear_srgb
from isp.sensor.model import NOISE_SOURCES

WINDOW = "scene.size=[768,1024]"
NOISE_OFF = [f"sensor.noise.{name}=false" for name in NOISE_SOURCES]
NO_DENOISE = ["+tuning.params.raw_denoise.enabled=false", "+tuning.params.yuv_denoise.enabled=false"]
LOOKS = ["neutral", "leica_authentic", "leica_vibrant", "leica_monochrome", "leica_monochrome_hc"]


def _grey_snr(result) -> dict[str, float]:
    return {p["name"]: p["snr"] for p in result.metrics["snr"]["output_luminance"]}


def _psnr(result, reference) -> float:
    mse = np.mean((result.rgb().astype(np.float64) - reference.rgb()) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


@pytest.mark.slow
def test_iso_3200_denoise_doubles_grey_snr_and_keeps_the_render():
    base = ["tuning=neutral", "sensor.iso=3200", WINDOW]
    denoised, noisy, clean = isp.run(base), isp.run([*base, *NO_DENOISE]), isp.run([*base, *NOISE_OFF])
    on, off = _grey_snr(denoised), _grey_snr(noisy)
    gains = {name: on[name] / off[name] for name in on}
    psnr_on, psnr_off = _psnr(denoised, clean), _psnr(noisy, clean)
    print(f"ISO 3200 neutral, grey-patch SNR gain from denoise: {', '.join(f'{g:.1f}x' for g in gains.values())}")
    print(f"PSNR against the noise-free render: {psnr_off:.2f} dB without denoise, {psnr_on:.2f} dB with")
    assert min(gains.values()) >= 2.0
    assert psnr_on > psnr_off + 3.0
    de = denoised.metrics["colorchecker"]["delta_e2000"]["mean"]
    assert de <= 2.0, "denoise must not cost colour accuracy"


@pytest.mark.parametrize("tuning", LOOKS)
def test_every_look_runs_and_reports_its_tuned_values(tuning):
    result = isp.run([f"tuning={tuning}", "scene.size=[120,160]", "sensor.iso=800"])
    assert result.image.data.dtype == np.uint8 and result.image.space == "srgb"
    tuned = result.metrics["tuned"]
    assert "raw_denoise" in tuned and "sharpen" in tuned, "ISO tables are resolved for this frame and reported"
    rgb = result.rgb().astype(int)
    is_grey = np.abs(rgb - rgb[..., :1]).max() == 0
    assert is_grey == tuning.startswith("leica_monochrome")


def test_the_high_contrast_monochrome_is_harder_and_darkens_blue():
    mono, hc = (isp.run([f"tuning={t}", "scene.size=[240,320]"]) for t in ("leica_monochrome", "leica_monochrome_hc"))
    names = [p["name"] for p in mono.metrics["colorchecker"]["delta_e2000"]["patches"]]
    lightness = {
        key: {p["name"]: p["lab"][0] for p in r.metrics["colorchecker"]["delta_e2000"]["patches"]} for key, r in (("m", mono), ("hc", hc))
    }
    white, black = names[18], names[23]
    assert lightness["hc"][white] - lightness["hc"][black] > lightness["m"][white] - lightness["m"][black]
    assert lightness["hc"]["blue"] < lightness["m"]["blue"], "the red-filter mix darkens blue"


@pytest.mark.slow
@pytest.mark.data
def test_gopro_dng_develops_with_its_gain_maps_and_two_calibrations(shared_data):
    path = shared_data / "raw" / "gopro_hero6.dng"
    base = ["scene=raw_file", f"scene.path={path}", "tuning=neutral", "pipeline.taps=[lens_shading,color_correction]"]
    corrected = isp.run(base)
    raw = corrected.raw
    assert len(raw.info.gain_maps) == 4 and all(m.gains.shape == (23, 23) for m in raw.info.gain_maps)
    assert {round(c.cct_k) for c in raw.info.color_matrices} == {2850, 5003}, "Tungsten and D50 calibrations"
    cct = corrected.metrics["white_balance"]["cct_k"]
    assert 2850 < cct < 12000, cct

    # the shading gain applied is the DNG's map (strength 1): corners lifted by the map's corner gains
    gain = corrected.taps["lens_shading"].shading_gain
    h, w = gain.shape
    corner_maps = [float(np.mean([m.gains[i, j] for m in raw.info.gain_maps])) for i, j in ((0, 0), (0, -1), (-1, 0), (-1, -1))]
    corner_gain = [float(gain[y, x]) for y, x in ((0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1))]
    np.testing.assert_allclose(corner_gain, corner_maps, rtol=0.05)
    assert min(corner_gain) > 1.3 and float(gain[h // 2, w // 2]) == pytest.approx(1.0, abs=0.05)

    # and the developed corners are brighter than without the correction by about that gain
    uncorrected = isp.run([*base, "+tuning.params.lens_shading.enabled=false"])
    lin_on, lin_off = (linear_srgb(r.taps["color_correction"]).mean(axis=2) for r in (corrected, uncorrected))
    box = 200
    for (y, x), g in zip(((0, 0), (0, w - box), (h - box, 0), (h - box, w - box)), corner_maps, strict=True):
        ratio = lin_on[y : y + box, x : x + box].mean() / lin_off[y : y + box, x : x + box].mean()
        assert ratio == pytest.approx(g, rel=0.15), (y, x, ratio, g)


def test_a_tungsten_lit_chart_is_balanced_and_corrected_to_d65():
    """The chart under CIE illuminant A: the as-shot neutral is the camera's response to the
    tungsten white, the CCT found from it is A's, and after the DNG-style correction (adapting
    that white to D65) the chart is as accurate as under D65; auto white balance gets close."""
    base = ["tuning=neutral", "scene.size=[480,640]"]
    d65 = isp.run(base).metrics
    tungsten = isp.run([*base, "scene.illuminant=A"]).metrics
    auto = isp.run([*base, "scene.illuminant=A", "tuning.params.white_balance.mode=white_patch"]).metrics
    assert tungsten["white_balance"]["cct_k"] == pytest.approx(2856, abs=20)
    blue_over_red = [m["white_balance"]["gains"][2] / m["white_balance"]["gains"][0] for m in (d65, tungsten)]
    assert blue_over_red[1] > 3 * blue_over_red[0], "tungsten light is weak in blue and strong in red"
    de = {name: m["colorchecker"]["delta_e2000"]["mean"] for name, m in (("d65", d65), ("a", tungsten), ("auto", auto))}
    assert de["a"] == pytest.approx(de["d65"], abs=0.1)
    assert auto["white_balance"]["cct_k"] == pytest.approx(2856, abs=100) and de["auto"] <= 2.0
    assert tungsten["colorchecker"]["illuminant"] == "A"

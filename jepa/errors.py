"""User-facing errors: raised for bad configs, paths and values; the CLI prints them in one line and exits 2."""


class ConfigError(ValueError):
    """A setting, path or value the user gave cannot work. The message names it and says how to fix it."""


def check_range(name: str, value, low: float, high: float, low_open: bool = True) -> tuple[float, float]:
    """A [min, max] pair from a config, checked against (low, high] (or [low, high]); a ConfigError names `name`."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"model.mask_sampler.{name} must be a pair [min, max], got {value!r}") from None
    bad_low = a <= low if low_open else a < low
    if bad_low or b > high or a > b:
        interval = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise ConfigError(f"model.mask_sampler.{name} = {[a, b]} must satisfy min <= max within {interval}")
    return a, b

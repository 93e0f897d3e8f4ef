//! Human byte sizes such as `65536`, `512KiB`, `1MiB`, `2GiB`. Pure.

/// Parses a size in bytes: a number, optionally followed by `B`, `KiB`,
/// `MiB` or `GiB` (powers of 1024).
pub fn parse(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return Err(format!(
            "invalid size {s:?}; write e.g. 65536, 512KiB or 1MiB"
        ));
    }
    let n: u64 = s[..digits]
        .parse()
        .map_err(|_| format!("invalid size {s:?}: number too large"))?;
    let unit: u64 = match s[digits..].trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {other:?}; use B, KiB, MiB or GiB"
            ));
        }
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let ok = [
            ("0", 0),
            ("65536", 65536),
            ("512B", 512),
            ("512KiB", 512 << 10),
            ("1MiB", 1 << 20),
            (" 2 GiB ", 2 << 30),
        ];
        for (s, want) in ok {
            assert_eq!(parse(s), Ok(want), "{s}");
        }
        for bad in [
            "",
            "MiB",
            "1MB",
            "1.5MiB",
            "-1",
            "99999999999999999999",
            "17179869184GiB",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}

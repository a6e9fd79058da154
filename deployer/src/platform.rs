//! The CPU architectures the stack's images are built for, and what each
//! means to cargo (a Rust target, a cross linker) and to Docker (a
//! platform, a tag suffix). `pipeline.yaml`'s `platforms:` lists them;
//! `release` builds all of them and pushes one image index per version, so
//! an x86_64 host and a Graviton host each pull their own.

use std::fmt;

/// One architecture the images can be built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Platform {
    Amd64,
    Arm64,
}

impl Platform {
    #[cfg(test)]
    pub const ALL: [Platform; 2] = [Platform::Amd64, Platform::Arm64];

    /// The platform of the machine the deployer runs on.
    pub fn native() -> Platform {
        if cfg!(target_arch = "aarch64") {
            Platform::Arm64
        } else {
            Platform::Amd64
        }
    }

    /// Docker's name (`amd64`, `arm64`): an image's `Architecture`.
    pub fn docker_arch(self) -> &'static str {
        match self {
            Platform::Amd64 => "amd64",
            Platform::Arm64 => "arm64",
        }
    }

    /// What `docker build --platform` takes.
    pub fn docker_platform(self) -> String {
        format!("linux/{}", self.docker_arch())
    }

    /// The Rust target its static binaries are built for (glibc,
    /// `+crt-static`).
    pub fn rust_target(self) -> &'static str {
        match self {
            Platform::Amd64 => "x86_64-unknown-linux-gnu",
            Platform::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// For a cross build: cargo's linker variable and the Debian cross
    /// compiler it should name, with the packages that provide it.
    pub fn cross_linker(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Platform::Amd64 => (
                "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER",
                "x86_64-linux-gnu-gcc",
                "gcc-x86-64-linux-gnu libc6-dev-amd64-cross",
            ),
            Platform::Arm64 => (
                "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
                "aarch64-linux-gnu-gcc",
                "gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
            ),
        }
    }

    /// The local tag of this platform's image of `version` when it is not
    /// the native one (`v1-arm64`); the native image is `version` itself.
    pub fn local_tag(self, version: &str) -> String {
        if self == Platform::native() {
            version.to_owned()
        } else {
            self.registry_tag(version)
        }
    }

    /// The tag each platform's image is pushed under, before the index
    /// named `version` ties them together.
    pub fn registry_tag(self, version: &str) -> String {
        format!("{version}-{}", self.docker_arch())
    }

    /// Parses `amd64`/`x86_64` and `arm64`/`aarch64` (with or without
    /// `linux/`).
    pub fn parse(text: &str) -> Option<Platform> {
        match text.trim().trim_start_matches("linux/") {
            "amd64" | "x86_64" => Some(Platform::Amd64),
            "arm64" | "aarch64" => Some(Platform::Arm64),
            _ => None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.docker_arch())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_both_ways() {
        for platform in Platform::ALL {
            assert_eq!(Platform::parse(platform.docker_arch()), Some(platform));
            assert_eq!(Platform::parse(&platform.docker_platform()), Some(platform));
        }
        assert_eq!(Platform::parse("aarch64"), Some(Platform::Arm64));
        assert_eq!(Platform::parse("x86_64"), Some(Platform::Amd64));
        assert_eq!(Platform::parse("riscv64"), None);
    }

    #[test]
    fn only_foreign_images_carry_a_suffix_locally() {
        let native = Platform::native();
        let foreign = Platform::ALL.into_iter().find(|p| *p != native).unwrap();
        assert_eq!(native.local_tag("abc"), "abc");
        assert_eq!(foreign.local_tag("abc"), format!("abc-{foreign}"));
        assert_eq!(native.registry_tag("abc"), format!("abc-{native}"));
    }
}

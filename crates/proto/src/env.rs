//! Job environment policy, shared by the gateway and the node. Pure.
//!
//! A requested variable reaches a job only if its name matches an
//! allowlist (`[policy] env_allow` on the gateway, `env_allow` in node.toml)
//! **and** it is not on the fixed [`DANGEROUS`] list. The dangerous list
//! wins over any glob: these variables change what an allowed command
//! does before or while it runs (loaders, shell start-up files,
//! interpreter options, GPU-stack plugins and injection libraries,
//! compilers and toolkit paths, code caches, dump paths) or which GPUs a
//! job sees, which the node alone decides.
//!
//! The GPU stack loads code from the environment in many places; the
//! sources for each entry are in docs/SECURITY.md ("The dangerous
//! environment list"). Where a whole family of names loads code (Triton's
//! and Inductor's knobs, NCCL's `*_PLUGIN` and `*_FILE`, rocprofiler's
//! `ROCP_*`), the family is listed as a glob, so a release that adds a name
//! is covered. [`DEFAULT_ALLOW`] names variables exactly: a prefix such as
//! `CUDA_*` or `NCCL_*` would admit `CUDA_INJECTION64_PATH` or
//! `NCCL_NET_PLUGIN`, and a test checks that no default entry overlaps the
//! dangerous list.

/// Variables no job may be given, whatever the allowlists say. Globs.
pub const DANGEROUS: &[&str] = &[
    // Dynamic loaders.
    "LD_*",
    "DYLD_*",
    "GCONV_PATH",
    "NLSPATH",
    "LOCPATH",
    "MALLOC_*",
    "GLIBC_TUNABLES",
    // Shells: start-up files, options and tracing hooks.
    "BASH_ENV",
    "ENV",
    "BASH_FUNC_*",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "IFS",
    "CDPATH",
    "GLOBIGNORE",
    // Search paths and homes that decide which code runs.
    "PATH",
    "HOME",
    "SHELL",
    "TMPDIR",
    "XDG_*",
    // Interpreters. Python's whole family (PYTHONPATH, PYTHONSTARTUP,
    // PYTHONPYCACHEPREFIX, whose forged bytecode another job then runs,
    // PYTHONBREAKPOINT, PYTHONWARNINGS, ...) but the switches in
    // [`SAFE_IN_FAMILY`]; Node's, R's, Julia's, .NET's and the package
    // managers' (an index or CA of the requester's choosing is code).
    "PYTHON*",
    "NODE_*",
    "NPM_CONFIG_*",
    "PIP_*",
    "UV_*",
    "CONDA*",
    "R_PROFILE*",
    "R_ENVIRON*",
    "R_LIBS*",
    "R_HOME",
    "JULIA_*",
    "DOTNET_*",
    "CORECLR_*",
    "COMPlus_*",
    "GEM_*",
    "BUNDLE_*",
    "LUA_PATH*",
    "LUA_CPATH*",
    "TCLLIBPATH",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "PERL5DB",
    "RUBYOPT",
    "RUBYLIB",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    "LUA_INIT*",
    "GIT_*",
    "OPENSSL_CONF",
    "LESSOPEN",
    "PAGER",
    "EDITOR",
    "VISUAL",
    // More shells and terminals: zsh's start-up directory and function
    // path, readline's and terminfo's files.
    "ZDOTDIR",
    "FPATH",
    "INPUTRC",
    "TERMINFO*",
    // Trust and proxies for what a job downloads (models, packages,
    // remote code): whoever picks them picks the code.
    "SSL_CERT_*",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "*_PROXY",
    "*_proxy",
    // Graphics and compute loaders: Vulkan ICDs and layers, GLVND's EGL
    // and GLX vendors (and every driver-internal `__` variable), OpenCL
    // ICDs.
    "VK_*",
    "__*",
    "OCL_ICD_*",
    "OPENCL_VENDOR_PATH",
    // GPU stack: libraries loaded into every process of the stack
    // (CUDA's and NVTX's injection hooks, NCCL's net, tuner, profiler and
    // env plugins, ROCm's tool libraries, PJRT and TPU plugins).
    "CUDA_INJECTION*",
    "NVTX_INJECTION*",
    "NCCL_*_PLUGIN",
    "HSA_TOOLS_*",
    "ROCP_*",
    "ROCPROFILER_*",
    "PJRT_NAMES_AND_LIBRARY_PATHS",
    "TPU_LIBRARY_PATH",
    // GPU stack: files read or written by path (NCCL's config file, which
    // can set any NCCL variable, its topology and graph files, its debug
    // log; GPU core dumps; cuDNN and cuBLAS logs; framework dumps).
    "NCCL_*_FILE",
    "CUDA_*COREDUMP*",
    "CUDNN_LOGDEST_DBG",
    "CUDNN_FRONTEND_LOG_FILE",
    "CUBLAS_LOGDEST_DBG",
    "CUBLASLT_LOG_FILE",
    "TF_DUMP_GRAPH_PREFIX",
    "TORCH_COMPILE_DEBUG_DIR",
    "TORCH_TRACE",
    "TORCH_LOGS_OUT",
    "TORCH_NCCL_DEBUG_INFO_TEMP_FILE",
    "TORCHELASTIC_ERROR_FILE",
    "JAX_DUMP_IR_TO",
    // GPU stack: compiled-code caches and other sources of code (a cache
    // entry is loaded and run; JAX's documentation says sharing its cache
    // is letting its writers run code), and switches that turn data into
    // code (pickled checkpoints, dataset scripts, code_eval).
    "CUDA_CACHE_PATH",
    "TRITON_*",
    "TORCHINDUCTOR_*",
    "TORCH_EXTENSIONS_DIR",
    "TORCH_HOME",
    "PYTORCH_KERNEL_CACHE_PATH",
    "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD",
    "JAX_COMPILATION_CACHE_DIR",
    "CUPY_CACHE_DIR",
    "MIOPEN_*",
    "ROCBLAS_*",
    "NUMBA_CACHE_DIR",
    "NUMBA_CUDA_*",
    "HF_MODULES_CACHE",
    "HF_DATASETS_TRUST_REMOTE_CODE",
    "HF_ALLOW_CODE_EVAL",
    // Compiler flag strings that set dump directories, the CUDA data
    // directory (which ptxas and libdevice run) and more.
    "XLA_FLAGS",
    "TF_XLA_FLAGS",
    // Toolkits and compilers: which nvcc, ptxas, host compiler and
    // libraries the stack runs and loads (torch's and Triton's extension
    // builds, cuda-python's library search, TensorFlow's CUDA search).
    "CUDA_HOME",
    "CUDA_PATH",
    "CUDA_ROOT",
    "CUDACXX",
    "CUDAHOSTCXX",
    "NVCC",
    "NVCC_*",
    "PTXAS_OPTIONS",
    "TF_CUDA_PATHS",
    "ROCM_PATH",
    "ROCM_HOME",
    "HIP_*",
    "HIPCC_*",
    "CC",
    "CXX",
    "CPP",
    "LD",
    "CFLAGS",
    "CXXFLAGS",
    "CPPFLAGS",
    "LDFLAGS",
    // GPU isolation and identity are the node's to set: which devices, in
    // which order their indices are read, which MPS server.
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "CUDA_MPS_*",
    "NVIDIA_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "GPU_DEVICE_ORDINAL",
    "OPENCLAW_*",
];

/// Members of a dangerous family (`PYTHON*`) that decide nothing about
/// which code runs: exempt from [`DANGEROUS`], by exact name.
pub const SAFE_IN_FAMILY: &[&str] = &[
    "PYTHONUNBUFFERED",
    "PYTHONHASHSEED",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONFAULTHANDLER",
    "PYTHONUTF8",
    "PYTHONNOUSERSITE",
    "PYTHONSAFEPATH",
    "PYTHONOPTIMIZE",
];

/// The gateway's default `env_allow`: variables ML jobs commonly need and
/// that cannot change which program runs, named exactly (no prefixes: see
/// the module docs). Paths (`HF_HOME`, `WANDB_DIR`, `TRANSFORMERS_CACHE`)
/// and endpoints (`HF_ENDPOINT`, `WANDB_BASE_URL`) decide where models and
/// code come from or where secrets go, so an admin adds them knowingly.
pub const DEFAULT_ALLOW: &[&str] = &[
    // CUDA and its libraries: debugging, loading and determinism switches.
    "CUDA_LAUNCH_BLOCKING",
    "CUDA_MODULE_LOADING",
    "CUDA_DEVICE_MAX_CONNECTIONS",
    "CUDA_CACHE_DISABLE",
    "CUDA_CACHE_MAXSIZE",
    "CUBLAS_WORKSPACE_CONFIG",
    "NVIDIA_TF32_OVERRIDE",
    // NCCL: logging to stderr, transport and tuning choices.
    "NCCL_DEBUG",
    "NCCL_DEBUG_SUBSYS",
    "NCCL_SOCKET_IFNAME",
    "NCCL_SOCKET_NTHREADS",
    "NCCL_NSOCKS_PERTHREAD",
    "NCCL_IB_DISABLE",
    "NCCL_IB_HCA",
    "NCCL_IB_GID_INDEX",
    "NCCL_IB_TIMEOUT",
    "NCCL_P2P_DISABLE",
    "NCCL_P2P_LEVEL",
    "NCCL_SHM_DISABLE",
    "NCCL_NET_GDR_LEVEL",
    "NCCL_CROSS_NIC",
    "NCCL_ALGO",
    "NCCL_PROTO",
    "NCCL_BUFFSIZE",
    "NCCL_MIN_NCHANNELS",
    "NCCL_MAX_NCHANNELS",
    "NCCL_NVLS_ENABLE",
    "NCCL_ASYNC_ERROR_HANDLING",
    "NCCL_BLOCKING_WAIT",
    // PyTorch: allocator, distributed and logging switches.
    "PYTORCH_CUDA_ALLOC_CONF",
    "TORCH_NCCL_ASYNC_ERROR_HANDLING",
    "TORCH_NCCL_BLOCKING_WAIT",
    "TORCH_DISTRIBUTED_DEBUG",
    "TORCH_SHOW_CPP_STACKTRACES",
    "TORCH_CPP_LOG_LEVEL",
    "TORCH_LOGS",
    "TORCH_CUDA_ARCH_LIST",
    // TensorFlow and JAX: logging and GPU memory.
    "TF_CPP_MIN_LOG_LEVEL",
    "TF_FORCE_GPU_ALLOW_GROWTH",
    "XLA_PYTHON_CLIENT_PREALLOCATE",
    "XLA_PYTHON_CLIENT_MEM_FRACTION",
    // Threads, Python output, seeds.
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "PYTHONUNBUFFERED",
    "PYTHONHASHSEED",
    "TOKENIZERS_PARALLELISM",
    "SEED",
    // Weights & Biases: the run and its key (its settings also take paths,
    // proxies and TLS switches from WANDB_*, which stay out).
    "WANDB_API_KEY",
    "WANDB_PROJECT",
    "WANDB_ENTITY",
    "WANDB_NAME",
    "WANDB_NOTES",
    "WANDB_TAGS",
    "WANDB_RUN_ID",
    "WANDB_RUN_GROUP",
    "WANDB_JOB_TYPE",
    "WANDB_RESUME",
    "WANDB_MODE",
    "WANDB_SILENT",
    "WANDB_DISABLED",
    "WANDB_LOG_MODEL",
    "WANDB_WATCH",
    // Hugging Face: the token and offline switches.
    "HF_TOKEN",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_HUB_DISABLE_TELEMETRY",
    "HF_HUB_DISABLE_PROGRESS_BARS",
    "HF_HUB_ENABLE_HF_TRANSFER",
    "TRANSFORMERS_OFFLINE",
    "TRANSFORMERS_VERBOSITY",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS",
];

/// Most variables one job may ask for.
pub const MAX_VARS: usize = 128;
/// Longest value.
pub const MAX_VALUE_LEN: usize = 32 * 1024;

/// Why a variable was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvRefusal {
    /// Not a valid name.
    InvalidName,
    /// On the fixed dangerous list (the glob that matched).
    Dangerous(&'static str),
    /// No `env_allow` glob matches it.
    NotAllowed,
    /// The value is too long or holds NUL.
    BadValue,
}

/// Whether `key` is a valid variable name: `[A-Za-z_][A-Za-z0-9_]{0,127}`.
pub fn valid_name(key: &str) -> bool {
    key.len() <= 128
        && key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The dangerous-list glob `key` matches, if any.
pub fn dangerous(key: &str) -> Option<&'static str> {
    if SAFE_IN_FAMILY.contains(&key) {
        return None;
    }
    DANGEROUS
        .iter()
        .copied()
        .find(|p| crate::glob::matches(p, key))
}

/// Checks one variable against an allowlist and the dangerous list.
pub fn check(allow: &[String], key: &str, value: &str) -> Result<(), EnvRefusal> {
    check_unlisted(key, value)?;
    if !crate::glob::any(allow, key) {
        return Err(EnvRefusal::NotAllowed);
    }
    Ok(())
}

/// Checks a variable no allowlist applies to (one an admin wrote into a
/// named job): its name, its value, and the dangerous list.
pub fn check_unlisted(key: &str, value: &str) -> Result<(), EnvRefusal> {
    if !valid_name(key) {
        return Err(EnvRefusal::InvalidName);
    }
    if let Some(p) = dangerous(key) {
        return Err(EnvRefusal::Dangerous(p));
    }
    if value.len() > MAX_VALUE_LEN || value.contains('\0') {
        return Err(EnvRefusal::BadValue);
    }
    Ok(())
}

/// A sentence for a refusal of `key`, naming the rule and the way out.
pub fn explain(key: &str, why: &EnvRefusal, allow_key: &str) -> String {
    let shown = key
        .chars()
        .take(64)
        .collect::<String>()
        .escape_debug()
        .to_string();
    match why {
        EnvRefusal::InvalidName => format!(
            "environment variable name {shown:?} is invalid; use letters, digits and '_', not starting with a digit"
        ),
        EnvRefusal::Dangerous(p) => format!(
            "environment variable {shown} is refused by policy: it matches {p:?} on the fixed list of variables \
             that change what a command runs (loaders, shell start-up, interpreter options, GPU-stack plugins, \
             compilers, code caches and dump paths, GPU isolation); no allowlist can admit it"
        ),
        EnvRefusal::NotAllowed => format!(
            "environment variable {shown} is refused by policy: it matches no glob in {allow_key}; \
             ask an admin to add it there"
        ),
        EnvRefusal::BadValue => {
            format!("the value of {shown} is longer than {MAX_VALUE_LEN} bytes or contains NUL")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_dangerous_list_beats_any_glob() {
        let everything = allow(&["*"]);
        for key in [
            "BASH_ENV",
            "ENV",
            "PATH",
            "PYTHONPATH",
            "PYTHONSTARTUP",
            "NODE_OPTIONS",
            "PERL5OPT",
            "RUBYOPT",
            "SHELLOPTS",
            "PS4",
            "IFS",
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "DYLD_INSERT_LIBRARIES",
            "CUDA_VISIBLE_DEVICES",
            "OPENCLAW_JOB_ID",
            "GIT_SSH_COMMAND",
            "HOME",
        ] {
            assert!(
                matches!(check(&everything, key, "x"), Err(EnvRefusal::Dangerous(_))),
                "{key}"
            );
        }
    }

    #[test]
    fn the_allowlist_decides_the_rest() {
        let defaults: Vec<String> = DEFAULT_ALLOW.iter().map(|s| s.to_string()).collect();
        for ok in DEFAULT_ALLOW {
            check(&defaults, ok, "1").unwrap();
        }
        // Paths and endpoints are not in the default: an admin adds them.
        for path in ["HF_HOME", "HF_ENDPOINT", "WANDB_DIR", "WANDB_BASE_URL"] {
            assert_eq!(check(&defaults, path, "/x"), Err(EnvRefusal::NotAllowed));
        }
        assert_eq!(check(&defaults, "EPOCHS", "3"), Err(EnvRefusal::NotAllowed));
        assert_eq!(check(&defaults, "1X", "3"), Err(EnvRefusal::InvalidName));
        assert_eq!(check(&defaults, "", "3"), Err(EnvRefusal::InvalidName));
        assert_eq!(
            check(&defaults, "HF_TOKEN", "a\0b"),
            Err(EnvRefusal::BadValue)
        );
        // CUDA_* in the allowlist does not admit the node's own variable.
        assert!(matches!(
            check(&defaults, "CUDA_VISIBLE_DEVICES", "0"),
            Err(EnvRefusal::Dangerous(_))
        ));
    }

    /// Whether some name matches both globs (`*` and `?` as in
    /// [`crate::glob`]).
    fn overlap(a: &[char], b: &[char]) -> bool {
        match (a.first(), b.first()) {
            (None, None) => true,
            (Some('*'), _) => overlap(&a[1..], b) || (!b.is_empty() && overlap(a, &b[1..])),
            (_, Some('*')) => overlap(a, &b[1..]) || (!a.is_empty() && overlap(&a[1..], b)),
            (None, _) | (_, None) => false,
            (Some(x), Some(y)) => (*x == '?' || *y == '?' || x == y) && overlap(&a[1..], &b[1..]),
        }
    }

    fn globs_overlap(a: &str, b: &str) -> bool {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        overlap(&a, &b)
    }

    /// The dangerous entries an allowlist entry could admit.
    fn admitted_dangers(allow: &str) -> Vec<&'static str> {
        if SAFE_IN_FAMILY.contains(&allow) {
            return vec![];
        }
        DANGEROUS
            .iter()
            .copied()
            .filter(|d| globs_overlap(allow, d))
            .collect()
    }

    #[test]
    fn the_overlap_check_finds_prefixes_that_cover_loaders() {
        let cases = [
            ("CUDA_*", "CUDA_INJECTION*", true),
            ("NCCL_*", "NCCL_*_PLUGIN", true),
            ("NCCL_DEBUG_FILE", "NCCL_*_FILE", true),
            ("NCCL_DEBUG", "NCCL_*_FILE", false),
            ("TORCH_*", "TORCH_HOME", true),
            ("TORCH_LOGS", "TORCH_HOME", false),
            ("*", "PATH", true),
            ("CUDA_?", "CC", false),
            ("C?", "CC", true),
            ("WANDB_PROJECT", "WANDB_*", true),
            ("HF_TOKEN", "HF_MODULES_CACHE", false),
        ];
        for (a, d, want) in cases {
            assert_eq!(globs_overlap(a, d), want, "{a} / {d}");
            assert_eq!(globs_overlap(d, a), want, "{d} / {a}");
        }
    }

    #[test]
    fn no_default_allowed_name_is_dangerous() {
        for allow in DEFAULT_ALLOW {
            assert!(valid_name(allow), "{allow} is not an exact name");
            let hit = admitted_dangers(allow);
            assert!(hit.is_empty(), "default env_allow {allow} admits {hit:?}");
        }
        // The prefixes the default had before admit loaders: the check
        // above would have failed on them.
        for (old, loader) in [
            ("CUDA_*", "CUDA_INJECTION64_PATH"),
            ("NCCL_*", "NCCL_NET_PLUGIN"),
            ("TORCH_*", "TORCH_EXTENSIONS_DIR"),
            ("HF_*", "HF_MODULES_CACHE"),
        ] {
            assert!(!admitted_dangers(old).is_empty(), "{old}");
            assert!(crate::glob::matches(old, loader) && dangerous(loader).is_some());
        }
    }

    #[test]
    fn the_third_reviews_loaders_are_dangerous_and_safe_switches_are_not() {
        // Each of these reached a job through env_allow = ["*"] before;
        // PYTHONPYCACHEPREFIX ran another job's forged bytecode with its
        // secret.
        for key in [
            "PYTHONPYCACHEPREFIX",
            "PYTHONEXECUTABLE",
            "PYTHONPLATLIBDIR",
            "NUMBA_CUDA_DRIVER",
            "NUMBA_CACHE_DIR",
            "VK_ICD_FILENAMES",
            "VK_LAYER_PATH",
            "VK_INSTANCE_LAYERS",
            "ZDOTDIR",
            "FPATH",
            "__EGL_VENDOR_LIBRARY_FILENAMES",
            "__GLX_VENDOR_LIBRARY_NAME",
            "OCL_ICD_VENDORS",
            "ROCBLAS_TENSILE_LIBPATH",
            "MIOPEN_USER_DB_PATH",
            "HIPCC_COMPILE_FLAGS_APPEND",
            "R_PROFILE_USER",
            "R_LIBS_USER",
            "JULIA_DEPOT_PATH",
            "DOTNET_STARTUP_HOOKS",
            "GEM_PATH",
            "NODE_EXTRA_CA_CERTS",
            "PIP_INDEX_URL",
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "HTTPS_PROXY",
            "https_proxy",
        ] {
            assert!(
                dangerous(key).is_some(),
                "{key} is not on the dangerous list"
            );
            assert!(
                matches!(
                    check(&["*".into()], key, "x"),
                    Err(EnvRefusal::Dangerous(_))
                ),
                "{key} passes env_allow = [\"*\"]"
            );
        }
        for key in SAFE_IN_FAMILY {
            assert_eq!(dangerous(key), None, "{key}");
            assert!(check(&["*".into()], key, "1").is_ok(), "{key}");
        }
        // An exemption is exact: no glob on the allowlist reaches the rest
        // of the family through it.
        assert!(dangerous("PYTHONUNBUFFEREDX").is_some());
    }

    #[test]
    fn gpu_stack_loaders_caches_and_dump_paths_are_dangerous() {
        // Names from the CUDA, NCCL, cuDNN, ROCm, PyTorch, TensorFlow,
        // JAX/XLA and Triton documentation (docs/SECURITY.md lists them).
        for key in [
            "CUDA_INJECTION64_PATH",
            "CUDA_INJECTION32_PATH",
            "NVTX_INJECTION64_PATH",
            "NCCL_NET_PLUGIN",
            "NCCL_TUNER_PLUGIN",
            "NCCL_PROFILER_PLUGIN",
            "NCCL_ENV_PLUGIN",
            "NCCL_CONF_FILE",
            "NCCL_DEBUG_FILE",
            "NCCL_TOPO_FILE",
            "NCCL_TOPO_DUMP_FILE",
            "NCCL_GRAPH_DUMP_FILE",
            "HSA_TOOLS_LIB",
            "ROCP_TOOL_LIB",
            "ROCP_TOOL_LIBRARIES",
            "ROCPROFILER_LIBRARY_CTOR",
            "PJRT_NAMES_AND_LIBRARY_PATHS",
            "TPU_LIBRARY_PATH",
            "CUDA_COREDUMP_FILE",
            "CUDA_ENABLE_COREDUMP_ON_EXCEPTION",
            "CUDNN_LOGDEST_DBG",
            "CUBLASLT_LOG_FILE",
            "TF_DUMP_GRAPH_PREFIX",
            "TORCH_COMPILE_DEBUG_DIR",
            "CUDA_CACHE_PATH",
            "TRITON_CACHE_DIR",
            "TRITON_HOME",
            "TRITON_LIBCUDA_PATH",
            "TRITON_PTXAS_PATH",
            "TRITON_CACHE_MANAGER",
            "TRITON_OVERRIDE_DIR",
            "TORCHINDUCTOR_CACHE_DIR",
            "TORCH_EXTENSIONS_DIR",
            "TORCH_HOME",
            "PYTORCH_KERNEL_CACHE_PATH",
            "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD",
            "JAX_COMPILATION_CACHE_DIR",
            "XLA_FLAGS",
            "TF_XLA_FLAGS",
            "HF_DATASETS_TRUST_REMOTE_CODE",
            "CUDA_HOME",
            "NVCC_PREPEND_FLAGS",
            "CC",
            "CUDA_DEVICE_ORDER",
            "CUDA_MPS_PIPE_DIRECTORY",
            "GPU_DEVICE_ORDINAL",
        ] {
            let everything = allow(&["*"]);
            assert!(
                matches!(
                    check(&everything, key, "/tmp/x.so"),
                    Err(EnvRefusal::Dangerous(_))
                ),
                "{key}"
            );
        }
        // Ordinary knobs stay admissible by an allowlist.
        for key in [
            "NCCL_DEBUG",
            "CUDA_LAUNCH_BLOCKING",
            "TORCH_LOGS",
            "CCACHE_DIR",
            "LDAP_URI",
        ] {
            assert_eq!(dangerous(key), None, "{key}");
        }
    }

    #[test]
    fn explanations_name_the_rule() {
        let m = explain("BASH_ENV", &EnvRefusal::Dangerous("BASH_ENV"), "x");
        assert!(
            m.contains("refused by policy") && m.contains("BASH_ENV"),
            "{m}"
        );
        let m = explain("EPOCHS", &EnvRefusal::NotAllowed, "[policy] env_allow");
        assert!(m.contains("[policy] env_allow"), "{m}");
    }
}

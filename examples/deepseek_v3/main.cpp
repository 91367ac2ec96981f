// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The `deepseek_v3` command (placeholder while the subcommands are written).
int main() { return 0; }

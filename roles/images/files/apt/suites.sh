# Sourced (". suites.sh"), never run: defines pin_suites, used by every Dockerfile before apt-get update and
# by the version resolution (candidates.sh) in the same way, so both see the same candidates.
#
#   pin_suites BASE_SUITE CHECK_VALID_UNTIL [PACKAGE=SUITE ...]
#
# Lets each PACKAGE, and nothing else, come from SUITE of the archive the base's own BASE_SUITE entry names
# (pulled or debootstrapped base alike): one apt sources entry per suite, and preferences that keep every
# other package of that suite uninstallable (-1) and pin PACKAGE above the base's suite (990). Its
# dependencies still come from BASE_SUITE, so apt refuses a package that needs more than the base ships.
# CHECK_VALID_UNTIL no: accept that suite's Release after its Valid-Until (testing's expires after a week;
# a mirror that lags, such as an air-gapped copy, would otherwise stop every build). Signatures are checked.
pin_suites() {
  [ "$#" -gt 2 ] || return 0
  base_suite="$1"
  check="$2"
  shift 2
  uri="$(awk -v suite="$base_suite" '
      FNR == 1 { uris = "" }
      /^deb[[:space:]]/ {
        i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit }
      }
      /^URIs:/ { uris = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite && uris != "") { print uris; exit } }
    ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null)"
  if [ -z "$uri" ]; then
    echo "the base image's apt sources name no ${base_suite} archive to take $* from" >&2
    return 3
  fi
  : > /etc/apt/sources.list.d/psscript-suites.list
  : > /etc/apt/preferences.d/psscript-suites
  for pin in "$@"; do
    package="${pin%%=*}"
    suite="${pin#*=}"
    if [ -z "$package" ] || [ -z "$suite" ] || [ "$package" = "$pin" ]; then
      echo "not PACKAGE=SUITE: ${pin}" >&2
      return 2
    fi
    line="deb [check-valid-until=${check}] ${uri} ${suite} main"
    grep -qxF "$line" /etc/apt/sources.list.d/psscript-suites.list \
      || printf '%s\n' "$line" >> /etc/apt/sources.list.d/psscript-suites.list
    if ! grep -qxF "Pin: release n=${suite}" /etc/apt/preferences.d/psscript-suites; then
      printf 'Package: *\nPin: release n=%s\nPin-Priority: -1\n\n' "$suite" >> /etc/apt/preferences.d/psscript-suites
    fi
    printf 'Package: %s\nPin: release n=%s\nPin-Priority: 990\n\n' "$package" "$suite" >> /etc/apt/preferences.d/psscript-suites
  done
}

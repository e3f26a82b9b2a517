#!/usr/bin/env bash
# Prints a directory holding Beam's Flink job server (FlinkJobServerDriver, embedded Flink
# with --flink-master=[local]) as plain jars, building it once with Maven into a cache
# outside the repository. Maven Central does not serve Beam's shaded job-server jar, so
# this resolves the runner artifact and its dependencies instead, and adds a small
# launcher jar whose manifest names the others and opens the JDK packages Flink needs:
#   java -jar "$DIR/beam-flink-job-server.jar" --flink-master='[local]' --job-port=N ...
#   (or java --add-opens=... -cp "$DIR/*" org.apache.beam.runners.flink.FlinkJobServerDriver ...)
# Python's FlinkRunner takes the launcher as --flink_job_server_jar="$DIR/beam-flink-job-server.jar".
# beam-runners-java-job-service is served only for some versions (2.62.0, 2.65.0, not
# 2.66-2.70): for LYKEION_BEAM_FLINK_VERSION=2.70.0 set LYKEION_BEAM_JOB_SERVICE_VERSION=2.65.0.
set -euo pipefail

VERSION="${LYKEION_BEAM_FLINK_VERSION:-2.62.0}"
JOB_SERVICE_VERSION="${LYKEION_BEAM_JOB_SERVICE_VERSION:-$VERSION}"
FLINK="${LYKEION_FLINK_MINOR:-1.19}"
CACHE="${LYKEION_CACHE:-$HOME/.cache/lykeion}"
DIR="$CACHE/flink-job-server/$VERSION-flink$FLINK-js$JOB_SERVICE_VERSION"

if [[ -f "$DIR/.complete" ]]; then
  echo "$DIR"
  exit 0
fi
mkdir -p "$(dirname "$DIR")"
work="$(mktemp -d "$DIR.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
b='<groupId>org.apache.beam</groupId>'
cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
  <groupId>lykeion</groupId><artifactId>flink-job-server</artifactId><version>0</version><packaging>pom</packaging>
  <dependencyManagement><dependencies>
    <dependency>$b<artifactId>beam-runners-java-job-service</artifactId><version>$JOB_SERVICE_VERSION</version></dependency>
    <dependency>$b<artifactId>beam-sdks-java-expansion-service</artifactId><version>$VERSION</version></dependency>
    <dependency>$b<artifactId>beam-sdks-java-harness</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>2.0.16</version></dependency>
  </dependencies></dependencyManagement>
  <dependencies>
    <dependency>$b<artifactId>beam-runners-flink-$FLINK</artifactId><version>$VERSION</version>
      <exclusions><exclusion><groupId>commons-logging</groupId><artifactId>commons-logging</artifactId></exclusion></exclusions></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>jcl-over-slf4j</artifactId><version>2.0.16</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>2.0.16</version></dependency>
  </dependencies>
</project>
EOF
mvn -B -q -Dstyle.color=never -f "$work/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
  -DoutputDirectory="$work/lib" >&2
{
  echo "Main-Class: org.apache.beam.runners.flink.FlinkJobServerDriver"
  echo "Add-Opens: java.base/java.lang java.base/java.lang.reflect java.base/java.io java.base/java.net"
  echo "  java.base/java.nio java.base/sun.nio.ch java.base/java.text java.base/java.time"
  echo "  java.base/java.util java.base/java.util.concurrent java.base/java.util.concurrent.atomic"
  echo "  java.base/java.util.concurrent.locks"
  echo "Class-Path: ."
  (cd "$work/lib" && ls -- *.jar | sed 's/^/  /')
} >"$work/manifest.txt"
jar --create --file "$work/lib/beam-flink-job-server.jar" --manifest "$work/manifest.txt"
rm -rf "$DIR"
mv "$work/lib" "$DIR"
touch "$DIR/.complete"
echo "$DIR"

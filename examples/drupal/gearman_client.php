<?php
// The PHP side of the Drupal example: submit jobs the way Drupal's gearman module
// does, with serialize() payloads that gearctl's Python workers read.

/**
 * gearman_drush_client(): submit $data to $function.
 *
 * In the background (the default) it returns the job handle once the server has
 * queued the job; in the foreground it returns the worker's answer unserialize()d.
 * Throws RuntimeException when the submit fails, so a failure is never mistaken
 * for success.
 */
function gearman_drush_client(string $function, $data, bool $background = TRUE, string $servers = '127.0.0.1:4730') {
  $client = new GearmanClient();
  $client->addServers($servers);
  if ($background) {
    $handle = $client->doBackground($function, serialize($data));
    if ($client->returnCode() !== GEARMAN_SUCCESS) {
      throw new RuntimeException("gearman: $function not queued: " . $client->error());
    }
    return $handle;
  }
  $result = $client->doNormal($function, serialize($data));
  if ($client->returnCode() !== GEARMAN_SUCCESS) {
    throw new RuntimeException("gearman: $function failed: " . $client->error());
  }
  $value = unserialize($result);
  if ($value === FALSE && $result !== serialize(FALSE)) {
    throw new RuntimeException("gearman: $function answered something unserialize() cannot read");
  }
  return $value;
}

// php gearman_client.php HOST:PORT FUNCTION JSON [--wait]: submit json_decode(JSON) as serialize().
if (PHP_SAPI === 'cli' && realpath($argv[0]) === realpath(__FILE__)) {
  $data = json_decode($argv[3], TRUE, 512, JSON_THROW_ON_ERROR);
  $wait = in_array('--wait', $argv, TRUE);
  $out = gearman_drush_client($argv[2], $data, !$wait, $argv[1]);
  echo $wait ? json_encode($out) : $out, "\n";
}

// fieldbot on Azure: the Azure Bot (single-tenant, Teams channel), Container Apps hosting, PostgreSQL
// flexible server and a Key Vault holding the secrets the container app reads through its managed
// identity. Deploy into an existing resource group (deploy/README.md, "Azure"):
//
//   az deployment group create -g <resource group> --parameters deploy/azure/main.example.bicepparam
//
// The Entra app registration itself (id, client secret, Graph permissions) is created beforehand, by hand
// or script, because it lives in the directory, not in the resource group.

targetScope = 'resourceGroup'

@description('Azure region for everything but the bot (which is global).')
param location string = resourceGroup().location

@description('Prefix of every resource name; lowercase letters, digits and hyphens.')
@minLength(3)
@maxLength(16)
param namePrefix string = 'fieldbot'

@description('Application (client) ID of the bot\'s single-tenant Entra app registration.')
@minLength(36)
@maxLength(36)
param botAppId string

@description('Entra tenant of the app registration (the bot\'s own tenant).')
param botTenantId string = tenant().tenantId

@description('Client secret of the app registration. Stored in Key Vault only.')
@secure()
param botAppPassword string

@description('Container image, e.g. myregistry.azurecr.io/fieldbot:0.1.0.')
param containerImage string

@description('Name of an Azure Container Registry in this resource group to pull from with the managed identity; empty for a public image.')
param acrName string = ''

@description('Custom host name already bound to the container app (e.g. fieldbot.contoso.com); empty to use the Container Apps default host.')
param customHostName string = ''

@description('At least 32 random bytes signing the operator sign-in cookies, e.g. openssl rand -base64 48.')
@secure()
@minLength(32)
param sessionKey string

@description('PostgreSQL administrator login (fieldbot connects with it; see the README for a dedicated role).')
param postgresAdminLogin string = 'fieldbotadmin'

@description('PostgreSQL administrator password, URL-safe characters recommended. Stored in Key Vault only.')
@secure()
@minLength(16)
param postgresAdminPassword string

@description('Compute of the PostgreSQL flexible server.')
param postgresSkuName string = 'Standard_B1ms'

@allowed([
  'Burstable'
  'GeneralPurpose'
  'MemoryOptimized'
])
param postgresSkuTier string = 'Burstable'

@description('Azure Bot pricing tier: F0 (free, standard channels such as Teams are free anyway) or S1.')
@allowed([
  'F0'
  'S1'
])
param botSku string = 'F0'

@description('Fewest replicas; two keep the webhook up during revisions and platform maintenance.')
@minValue(2)
param minReplicas int = 2

param maxReplicas int = 4

@description('More non-secret settings as {name, value} pairs, e.g. FIELDBOT__FASTTRACK__LEADS.')
param extraEnv array = []

var suffix = uniqueString(resourceGroup().id)
var appName = namePrefix
var databaseName = 'fieldbot'
var keyVaultName = take('${namePrefix}kv${suffix}', 24)
var publicHost = empty(customHostName) ? '${appName}.${containerEnv.properties.defaultDomain}' : customHostName
var publicBaseUrl = 'https://${publicHost}'
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'
var acrPullRoleId = '7f951dda-4ed3-4680-a7ca-43fe172d538d'

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${namePrefix}-logs'
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${namePrefix}-identity'
  location: location
}

// ---------------------------------------------------------------------------------------------------
// PostgreSQL: public endpoint reachable from Azure services only, TLS required.
// ---------------------------------------------------------------------------------------------------

resource postgres 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: '${namePrefix}-pg-${suffix}'
  location: location
  sku: {
    name: postgresSkuName
    tier: postgresSkuTier
  }
  properties: {
    version: '15'
    administratorLogin: postgresAdminLogin
    administratorLoginPassword: postgresAdminPassword
    authConfig: {
      activeDirectoryAuth: 'Disabled'
      passwordAuth: 'Enabled'
    }
    storage: {
      storageSizeGB: 32
      autoGrow: 'Enabled'
    }
    backup: {
      backupRetentionDays: 7
      geoRedundantBackup: 'Disabled'
    }
    highAvailability: {
      mode: 'Disabled'
    }
    network: {
      publicNetworkAccess: 'Enabled'
    }
  }
}

// The server accepts one change at a time, so the children below are chained with dependsOn.
resource requireTls 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2024-08-01' = {
  parent: postgres
  name: 'require_secure_transport'
  properties: {
    value: 'ON'
    source: 'user-override'
  }
}

resource minTlsVersion 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2024-08-01' = {
  parent: postgres
  name: 'ssl_min_protocol_version'
  properties: {
    value: 'TLSv1.2'
    source: 'user-override'
  }
  dependsOn: [
    requireTls
  ]
}

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: postgres
  name: databaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
  dependsOn: [
    minTlsVersion
  ]
}

// 0.0.0.0-0.0.0.0 is Azure's marker for "connections from Azure services", which includes Container
// Apps. For network isolation use VNet integration and a private endpoint instead (see the README).
resource allowAzureServices 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = {
  parent: postgres
  name: 'AllowAllAzureServicesAndResourcesWithinAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
  dependsOn: [
    database
  ]
}

// ---------------------------------------------------------------------------------------------------
// Key Vault: the three secrets, readable by the container app's identity only (Azure RBAC).
// ---------------------------------------------------------------------------------------------------

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
  }
}

resource botPasswordSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'bot-app-password'
  properties: {
    value: botAppPassword
  }
}

resource storeUrlSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'store-url'
  properties: {
    value: 'postgres://${postgresAdminLogin}:${uriComponent(postgresAdminPassword)}@${postgres.properties.fullyQualifiedDomainName}:5432/${databaseName}?sslmode=require'
  }
}

resource sessionKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'session-key'
  properties: {
    value: sessionKey
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identity.id, keyVaultSecretsUserRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = if (!empty(acrName)) {
  name: acrName
}

resource acrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(acrName)) {
  name: guid(resourceGroup().id, acrName, identity.id, acrPullRoleId)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPullRoleId)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------------------------
// Container Apps: two or more replicas behind HTTPS ingress on port 3978.
// ---------------------------------------------------------------------------------------------------

resource containerEnv 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: '${namePrefix}-env'
  location: location
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
  }
}

// Non-secret values inline, secrets by reference to the Key Vault-backed container app secrets.
var baseEnv = [
  {
    name: 'FIELDBOT_ENV'
    value: 'production'
  }
  {
    name: 'FIELDBOT__BOT__APP_ID'
    value: botAppId
  }
  {
    name: 'FIELDBOT__BOT__TENANT_ID'
    value: botTenantId
  }
  {
    name: 'FIELDBOT__BOT__APP_PASSWORD'
    secretRef: 'bot-app-password'
  }
  {
    name: 'FIELDBOT__STORE__URL'
    secretRef: 'store-url'
  }
  {
    name: 'FIELDBOT__SIGNIN__PUBLIC_BASE_URL'
    value: publicBaseUrl
  }
  {
    name: 'FIELDBOT__SIGNIN__SESSION_KEY'
    secretRef: 'session-key'
  }
]

var acrRegistries = [
  {
    server: '${acrName}.azurecr.io'
    identity: identity.id
  }
]

resource app 'Microsoft.App/containerApps@2024-03-01' = {
  name: appName
  location: location
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    managedEnvironmentId: containerEnv.id
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: true
        targetPort: 3978
        transport: 'http'
        allowInsecure: false
      }
      registries: empty(acrName) ? [] : acrRegistries
      // Key Vault references: the platform fetches the values with the managed identity; the template
      // and the container app's configuration never hold them.
      secrets: [
        {
          name: 'bot-app-password'
          keyVaultUrl: botPasswordSecret.properties.secretUri
          identity: identity.id
        }
        {
          name: 'store-url'
          keyVaultUrl: storeUrlSecret.properties.secretUri
          identity: identity.id
        }
        {
          name: 'session-key'
          keyVaultUrl: sessionKeySecret.properties.secretUri
          identity: identity.id
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'fieldbot'
          image: containerImage
          args: [
            'serve'
          ]
          resources: {
            cpu: json('0.5')
            memory: '1Gi'
          }
          env: concat(baseEnv, extraEnv)
          probes: [
            {
              type: 'Startup'
              httpGet: {
                path: '/healthz'
                port: 3978
              }
              initialDelaySeconds: 5
              periodSeconds: 5
              failureThreshold: 10
            }
            {
              type: 'Readiness'
              httpGet: {
                path: '/readyz'
                port: 3978
              }
              periodSeconds: 10
              timeoutSeconds: 3
              failureThreshold: 3
            }
            {
              type: 'Liveness'
              httpGet: {
                path: '/healthz'
                port: 3978
              }
              periodSeconds: 20
              timeoutSeconds: 3
              failureThreshold: 3
            }
          ]
        }
      ]
      scale: {
        minReplicas: minReplicas
        maxReplicas: maxReplicas
        rules: [
          {
            name: 'http'
            http: {
              metadata: {
                concurrentRequests: '50'
              }
            }
          }
        ]
      }
    }
  }
  dependsOn: [
    secretsUser
    acrPull
    allowAzureServices
  ]
}

// ---------------------------------------------------------------------------------------------------
// Azure Bot: single-tenant registration, messaging endpoint on the container app, Teams channel.
// ---------------------------------------------------------------------------------------------------

resource bot 'Microsoft.BotService/botServices@2022-09-15' = {
  name: '${namePrefix}-bot-${suffix}'
  location: 'global'
  kind: 'azurebot'
  sku: {
    name: botSku
  }
  properties: {
    displayName: 'fieldbot'
    endpoint: '${publicBaseUrl}/api/messages'
    msaAppId: botAppId
    msaAppTenantId: botTenantId
    msaAppType: 'SingleTenant'
  }
}

resource teamsChannel 'Microsoft.BotService/botServices/channels@2022-09-15' = {
  parent: bot
  name: 'MsTeamsChannel'
  location: 'global'
  properties: {
    channelName: 'MsTeamsChannel'
    properties: {
      isEnabled: true
    }
  }
}

output messagingEndpoint string = bot.properties.endpoint
output publicBaseUrl string = publicBaseUrl
output containerAppFqdn string = app.properties.configuration.ingress.fqdn
output signInRedirectUri string = '${publicBaseUrl}/auth/callback'
output keyVaultName string = vault.name
output postgresHost string = postgres.properties.fullyQualifiedDomainName
output identityPrincipalId string = identity.properties.principalId
output teamsChannelName string = teamsChannel.name
output packageCommand string = 'fieldbot package --bot-app-id ${botAppId} --public-base-url ${publicBaseUrl} --out fieldbot-teams.zip'
